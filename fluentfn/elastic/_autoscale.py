"""The autoscaling decision as a pure state machine: load samples in, host counts out.

The policy half of autoscaling (issue #12). The directory will sample each type's load
(turns running and queued on its hosts) and feed it here; the answer is how many hosts
the type should have. Rules:

- the wanted count is ``ceil(load / target_inflight)``, within ``[min_hosts, max_hosts]``
  (at least one while there is any load, even with ``min_hosts=0``);
- more hosts only after the wanted count has stayed above the current one for
  ``up_after_s``; fewer only after it has stayed below for ``down_after_s`` (so a burst
  or a lull shorter than that changes nothing); a step goes to the lowest wanted count
  of the window when growing, the highest when shrinking (never overshooting the load);
- with ``min_hosts=0`` an idle type goes to zero hosts after ``down_after_s``;
- never fewer while a host is still starting: its load is not known yet (the call that
  cold-started it waits for it), so the wait for fewer begins once every host is up.
  Without this, a host that takes longer than ``down_after_s`` to start was stopped
  before it could serve the call that started it, again and again;
- a host that is up but did not say its load (``silent``: saturated, hung, or dying) is
  not idle: it counts as full (``target_inflight`` turns) and, like a starting one, holds
  off fewer hosts. Counted as 0 it would shrink a saturated group; with no sample at all
  one silent host froze its group's growth until it was replaced.

No clocks, Ray or sockets; ``tests/test_elastic_policy.py`` checks it with hypothesis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .._numbers import check_number
from ..errors import FluentError


@dataclass(frozen=True, slots=True)
class Autoscale:
    """``ff.Autoscale``: follow load between ``min_hosts`` and ``max_hosts``."""

    target_inflight: float = 8.0
    up_after_s: float = 2.0
    down_after_s: float = 30.0

    def __post_init__(self) -> None:
        check_number("Autoscale.target_inflight", self.target_inflight, positive=True, finite=True)
        check_number("Autoscale.up_after_s", self.up_after_s, positive=False, finite=True)
        check_number("Autoscale.down_after_s", self.down_after_s, positive=False, finite=True)


@dataclass(frozen=True, slots=True)
class Sample:
    """At ``now``, the type runs ``hosts`` hosts with ``load`` turns running or queued on
    those that are up and answered; ``starting`` of the ``hosts`` are not up yet, and
    ``silent`` ones are up but gave no load."""

    now: float
    hosts: int
    load: float
    starting: int = 0
    silent: int = 0


@dataclass(slots=True)
class AutoscalePolicy:
    """Decides a type's host count from its load samples."""

    settings: Autoscale
    min_hosts: int
    max_hosts: int
    _window: list[tuple[float, int]] = field(default_factory=list)  # (time, wanted) since the last change

    def __post_init__(self) -> None:
        if not 0 <= self.min_hosts <= self.max_hosts or self.max_hosts < 1:
            raise FluentError(
                f"need 0 <= min_hosts <= max_hosts and max_hosts >= 1, not {self.min_hosts}..{self.max_hosts}"
            )

    def wanted(self, load: float) -> int:
        """Hosts the load calls for, within the bounds."""
        want = math.ceil(max(load, 0.0) / self.settings.target_inflight)
        if load > 0:
            want = max(want, 1)
        return min(self.max_hosts, max(self.min_hosts, want))

    def handle(self, sample: Sample) -> int | None:
        """The new host count, or None to stay."""
        want = self.wanted(sample.load + sample.silent * self.settings.target_inflight)
        if want == sample.hosts:
            self._window.clear()
            return None
        if want < sample.hosts and (sample.starting or sample.silent):
            self._window.clear()  # a host's load is unknown (starting, or silent): no lull yet
            return None
        if self._window and (self._window[0][1] > sample.hosts) != (want > sample.hosts):
            self._window.clear()  # the direction changed: start over
        self._window.append((sample.now, want))
        start = self._window[0][0]
        wait = self.settings.up_after_s if want > sample.hosts else self.settings.down_after_s
        if sample.now - start < wait:
            return None
        wants = [w for _, w in self._window]
        self._window.clear()
        return min(wants) if want > sample.hosts else max(wants)
