"""In-memory timers (``ff.context().after``): a tell to the identity itself after a delay,
with nothing written; gone with the activation that set it; a call that could never run
is refused when the timer is set."""

from __future__ import annotations

import time
from typing import Any

import pytest

import fluentfn as ff
from fluentfn._ioloop import IoLoop
from fluentfn.state._store import Store
from fluentfn.testing import wait_for

from .test_engine import engine
from .test_exactness import local_def, send

pytestmark = pytest.mark.timeout(60)


class Beat:
    def __init__(self) -> None:
        self.beats = 0

    def start(self, delay: float) -> None:
        ff.context().after(delay, "beat", delay)

    def beat(self, delay: float) -> None:
        self.beats += 1
        if self.beats < 3:
            ff.context().after(delay, "beat", delay)

    def bad(self, what: str) -> None:
        if what == "method":
            ff.context().after(0.01, "nope")
        else:
            ff.context().after(0.01, "beat", 1, 2, 3)

    def get(self) -> int:
        return self.beats


def test_a_timer_fires_into_its_identity_and_writes_nothing_of_its_own(io: IoLoop, store: Store) -> None:
    eng = engine(io, store, local_def(Beat, "call"))
    send(io, eng, "a", "start", 0.05, rid="s1")
    wait_for(lambda: send(io, eng, "a", "get", rid=f"g{time.monotonic_ns()}") == 3, 30)
    time.sleep(0.2)
    assert send(io, eng, "a", "get", rid="g-last") == 3  # it stopped re-arming at 3
    assert store.reminders_of("Timer/a") == [] and eng.timers.fired == 3


def test_a_timer_is_gone_with_its_activation(io: IoLoop, store: Store) -> None:
    eng = engine(io, store, local_def(Beat, "call"))
    send(io, eng, "b", "start", 0.5, rid="s2")
    act: Any = eng.table.get("Timer/b")
    assert act is not None
    assert io.run(eng.upkeep.passivate(act))  # deactivated before the timer is due
    time.sleep(0.8)
    assert eng.timers.fired == 0
    assert send(io, eng, "b", "get", rid="g2") == 0


@pytest.mark.parametrize("what", ["method", "args"])
def test_a_timer_that_could_never_run_is_refused_when_set(io: IoLoop, store: Store, what: str) -> None:
    eng = engine(io, store, local_def(Beat, "call"))
    with pytest.raises(ff.ActorError) as info:
        send(io, eng, "c", "bad", what, rid=f"bad-{what}")
    assert isinstance(info.value, ff.InvalidRequest)


def test_timers_are_for_live_identities_only() -> None:
    with pytest.raises(ff.FluentError, match="inside an actor"):
        ff.context().after(1, "beat")
