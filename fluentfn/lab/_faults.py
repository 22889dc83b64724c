"""Faults on messages between identities, as pure rules: what happens to one message.

A rule names who it applies to by *names*: an identity (``"Node/n1"``), a type
(``"Node"``: all its identities) or ``"client"`` (drivers and clients, which make calls
outside any turn). ``between=(A, B)`` limits a rule to messages from a name in A to a
name in B or back; no ``between`` means every message.

- ``Partition(groups)``: a message from a member of one group to a member of another is
  lost, both ways (names in no group are not affected).
- ``Loss(p)``: a request or a reply is lost with probability ``p``.
- ``Delay(mean_ms, jitter_ms)``: a request leaves later (uniform in mean ± jitter; the
  jitter reorders messages).
- ``Duplicate(p)``: a request is delivered twice with probability ``p``.

Every random choice is a hash of the seed and the message (its request id, attempt and
direction), so the same seed gives the same faults to the same messages whatever the
threads and processes did meanwhile — a run can be replayed.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

CLIENT = "client"
Names = frozenset[str]


def _names(group: Iterable[str] | str) -> Names:
    if isinstance(group, str):
        return frozenset([group])
    out = frozenset(group)
    if not all(isinstance(n, str) and n for n in out):
        raise ValueError(f"a group names identities ('Type/key'), types or 'client', got {sorted(map(repr, out))}")
    return out


def matches(name: str, who: str) -> bool:
    """Whether ``name`` names ``who`` (an address, or "" for a client)."""
    if not who:
        return name == CLIENT
    return name == who or ("/" not in name and who.startswith(name + "/"))


def _in(group: Names, who: str) -> bool:
    return any(matches(n, who) for n in group)


@dataclass(frozen=True, slots=True)
class Partition:
    groups: tuple[Names, ...]


@dataclass(frozen=True, slots=True)
class Loss:
    p: float
    between: tuple[Names, Names] | None = None


@dataclass(frozen=True, slots=True)
class Delay:
    mean_ms: float
    jitter_ms: float = 0.0
    between: tuple[Names, Names] | None = None


@dataclass(frozen=True, slots=True)
class Duplicate:
    p: float
    between: tuple[Names, Names] | None = None


Rule = Partition | Loss | Delay | Duplicate


@dataclass(frozen=True, slots=True)
class Fate:
    """What happens to one message."""

    lost: bool = False
    delay_s: float = 0.0
    copies: int = 1


DELIVERED = Fate()


def _unit(seed: int, *parts: Any) -> float:
    """A number in [0, 1) fixed by the seed and ``parts``."""
    h = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    value: int = struct.unpack("<Q", h)[0]
    return value / 2**64


def _applies(between: tuple[Names, Names] | None, sender: str, receiver: str) -> bool:
    if between is None:
        return True
    a, b = between
    return (_in(a, sender) and _in(b, receiver)) or (_in(b, sender) and _in(a, receiver))


def _group_of(p: Partition, who: str) -> int | None:
    for i, g in enumerate(p.groups):
        if _in(g, who):
            return i
    return None


@dataclass(frozen=True)
class Faults:
    """The lab's settings in force (immutable: changing them makes a new one): the fault
    rules, their seed, and the folder where every process records its messages ("": none)."""

    rules: tuple[Rule, ...] = ()
    seed: int = 0
    version: int = 0
    record_dir: str = ""
    _empty: bool = field(default=True, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_empty", not self.rules)

    @property
    def active(self) -> bool:
        """Whether the routers need a tap at all."""
        return not self._empty or bool(self.record_dir)

    def _with(self, rules: tuple[Rule, ...], *, seed: int | None = None, record_dir: str | None = None) -> Faults:
        return Faults(
            rules,
            self.seed if seed is None else seed,
            self.version + 1,
            self.record_dir if record_dir is None else record_dir,
        )

    def with_rule(self, rule: Rule) -> Faults:
        return self._with((*self.rules, rule))

    def healed(self) -> Faults:
        """Without partitions (the other faults stay)."""
        return self._with(tuple(r for r in self.rules if not isinstance(r, Partition)))

    def cleared(self) -> Faults:
        """No fault rules (recording, if on, goes on)."""
        return self._with(())

    def seeded(self, seed: int) -> Faults:
        return self._with(self.rules, seed=seed)

    def recording(self, record_dir: str) -> Faults:
        """Messages recorded under ``record_dir`` ("" stops recording)."""
        return self._with(self.rules, record_dir=record_dir)

    def request(self, sender: str, receiver: str, request_id: str, attempt: int) -> Fate:
        """The fate of a request from ``sender`` to ``receiver``."""
        if self._empty:
            return DELIVERED
        delay = 0.0
        copies = 1
        for i, r in enumerate(self.rules):
            if isinstance(r, Partition):
                a, b = _group_of(r, sender), _group_of(r, receiver)
                if a is not None and b is not None and a != b:
                    return Fate(lost=True)
            elif not _applies(r.between, sender, receiver):
                continue
            elif isinstance(r, Loss):
                if _unit(self.seed, i, "req", request_id, attempt) < r.p:
                    return Fate(lost=True)
            elif isinstance(r, Delay):
                u = _unit(self.seed, i, "delay", request_id, attempt)
                delay += max(0.0, r.mean_ms + (2 * u - 1) * r.jitter_ms) / 1000.0
            elif _unit(self.seed, i, "dup", request_id, attempt) < r.p:
                copies = 2
        return Fate(delay_s=delay, copies=copies) if delay or copies > 1 else DELIVERED

    def reply(self, sender: str, receiver: str, request_id: str, attempt: int) -> bool:
        """Whether the reply to a request from ``sender`` to ``receiver`` comes back."""
        if self._empty:
            return True
        for i, r in enumerate(self.rules):
            if isinstance(r, Partition):
                a, b = _group_of(r, sender), _group_of(r, receiver)
                if a is not None and b is not None and a != b:
                    return False
            elif (
                isinstance(r, Loss)
                and _applies(r.between, sender, receiver)
                and _unit(self.seed, i, "reply", request_id, attempt) < r.p
            ):
                return False
        return True


def partition(*groups: Iterable[str] | str) -> Partition:
    if len(groups) < 2:
        raise ValueError("a partition has at least two groups")
    return Partition(tuple(_names(g) for g in groups))


def _pair(between: tuple[Iterable[str] | str, Iterable[str] | str] | None) -> tuple[Names, Names] | None:
    return None if between is None else (_names(between[0]), _names(between[1]))


def _probability(p: float) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a probability is in [0, 1], got {p!r}")
    return float(p)


def loss(p: float, between: tuple[Iterable[str] | str, Iterable[str] | str] | None = None) -> Loss:
    return Loss(_probability(p), _pair(between))


def delay(
    mean_ms: float, jitter_ms: float = 0.0, between: tuple[Iterable[str] | str, Iterable[str] | str] | None = None
) -> Delay:
    if mean_ms < 0 or jitter_ms < 0:
        raise ValueError("a delay and its jitter are not negative")
    return Delay(float(mean_ms), float(jitter_ms), _pair(between))


def duplicate(p: float, between: tuple[Iterable[str] | str, Iterable[str] | str] | None = None) -> Duplicate:
    return Duplicate(_probability(p), _pair(between))
