"""The nemesis, as a researcher calls it from a driver: each call changes the faults in
force in every process of the cluster and returns them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from . import _faults, _hosts
from ._faults import Faults
from ._nemesis import apply, current

Group = Iterable[str] | str


def partition(*groups: Group) -> Faults:
    """Messages between members of different ``groups`` are lost, both ways, until
    ``heal()``. Members are identities ("Node/n1"), types ("Node") or "client"."""
    return apply(current().with_rule(_faults.partition(*groups)))


def heal() -> Faults:
    """Every partition ends (the other faults stay)."""
    return apply(current().healed())


def loss(p: float, between: tuple[Group, Group] | None = None) -> Faults:
    """Each request, and each reply, is lost with probability ``p``."""
    return apply(current().with_rule(_faults.loss(p, between)))


def delay(mean_ms: float, jitter_ms: float = 0.0, between: tuple[Group, Group] | None = None) -> Faults:
    """Requests leave ``mean_ms`` ± ``jitter_ms`` later (jitter reorders them)."""
    return apply(current().with_rule(_faults.delay(mean_ms, jitter_ms, between)))


def duplicate(p: float, between: tuple[Group, Group] | None = None) -> Faults:
    """Each request is delivered twice with probability ``p``."""
    return apply(current().with_rule(_faults.duplicate(p, between)))


def clear_faults() -> Faults:
    """No fault rules (with recording off too, the routers' fast path again)."""
    return apply(current().cleared())


def record(run_dir: str | Path) -> Faults:
    """Every process of the cluster records each message it sends and each reply it gets
    under ``run_dir`` (a folder every process can write: this machine's, or a shared one);
    ``messages(run_dir)`` gathers them."""
    folder = Path(run_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return apply(current().recording(str(folder)))


def stop_recording() -> Faults:
    return apply(current().recording(""))


def seed_faults(seed: int) -> Faults:
    """The seed every random fault is drawn from (the same seed, the same faults)."""
    return apply(current().seeded(int(seed)))


def faults() -> Faults:
    """The faults in force in this process."""
    return current()


def kill(target: str) -> int:
    """SIGKILL the host process serving ``target`` (an identity's address, or a host id);
    Ray restarts it, and its identities come back from the store. Returns the pid."""
    return _hosts.kill(target)


def pause(target: str, seconds: float) -> int:
    """Stop the host process serving ``target`` for ``seconds`` (SIGSTOP, then SIGCONT);
    returns its pid at once."""
    return _hosts.pause(target, seconds)


def resume() -> list[int]:
    """Resume every host this process paused, now; returns their pids."""
    return _hosts.resume_all()


def own_hosts(actor_type: str, count: int, prefix: str = "n") -> list[str]:
    """``count`` keys of ``actor_type`` (a name) that lie on ``count`` different hosts (the
    type is scaled to that many): give each node of an experiment its own host, so that
    ``kill`` of one node kills only it."""
    return _hosts.own_hosts(actor_type, count, prefix)
