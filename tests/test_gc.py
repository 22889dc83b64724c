"""``_gc.tune``: what it changes in a process's collector, and that a user's process gets it back."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from fluentfn import _gc

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def collector() -> Iterator[None]:
    """This test process's collector as the test found it, afterwards."""
    thresholds, frozen = gc.get_threshold(), gc.get_freeze_count()
    gc.set_threshold(700, 10, 10)
    if frozen:
        gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    if frozen:
        gc.freeze()


@pytest.mark.usefixtures("collector")
def test_a_user_process_is_tuned_and_given_back() -> None:
    kept = [object() for _ in range(10)]  # alive now: frozen
    tuned = _gc.tune(user_process=True)
    assert tuned is not None
    assert gc.get_threshold() == _gc.THRESHOLDS
    assert gc.get_freeze_count() >= len(kept)
    assert _gc.tune(user_process=True) is None, "a second cluster in the same process changes nothing more"
    tuned.restore()
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


@pytest.mark.usefixtures("collector")
def test_the_setting_leaves_a_user_process_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUENTFN_GC", "0")
    assert _gc.tune(user_process=True) is None
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
    tuned = _gc.tune(user_process=False)  # a process fluentfn owns is tuned whatever the setting
    assert tuned is not None
    assert gc.get_threshold() == _gc.THRESHOLDS


@pytest.mark.usefixtures("collector")
def test_what_someone_else_froze_stays_frozen() -> None:
    gc.freeze()
    theirs = gc.get_freeze_count()
    assert theirs > 0
    tuned = _gc.tune(user_process=True)
    assert tuned is not None
    tuned.restore()
    assert gc.get_freeze_count() >= theirs, "restore thawed objects it did not freeze"


@pytest.mark.usefixtures("collector")
def test_thresholds_the_user_set_meanwhile_are_kept() -> None:
    tuned = _gc.tune(user_process=True)
    assert tuned is not None
    gc.set_threshold(5_000, 10, 10)
    tuned.restore()
    assert gc.get_threshold() == (5_000, 10, 10)
