"""Faults on hosts: ``kill`` (SIGKILL) and ``pause`` (SIGSTOP, then SIGCONT) the process that
serves an identity, and ``own_hosts``: keys of a type placed one to a host, so that killing
one node kills only it. In FaaS mode the process is an execution environment: the one
running an invocation of the identity now (a kill ends it mid-invocation), else one of
its type.

A target is an identity's address (``"Node/n1"``: the host that owns its partition now) or
a host id (as ``cluster.placement`` names it). The signal is sent on the host's own node: by
this process when it is the same node, else by a task placed there. Ray restarts a killed
host; a paused one is resumed when its time is up, by ``resume_all()``, and never left
stopped by a run (the runner resumes all at its end).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

from ..errors import FluentError, NotFound
from ..placement import shard_for

_paused: dict[int, tuple[str, threading.Timer]] = {}  # pid -> (its node, the timer that resumes it)
_lock = threading.Lock()


def _directory() -> Any:
    from ..runtime._cluster import current

    return current().directory


def _hosts() -> list[dict[str, Any]]:
    import ray

    from ..testing import _host_info

    return [_host_info(h) for _, _, h in ray.get(_directory().hosts.remote())]


def _faas() -> Any:
    """The FaaS runtime of this process, or None in stateful mode."""
    from .._ref import current_invoker

    invoker = current_invoker()
    return invoker if getattr(invoker, "mode", "") == "faas" else None


def stateful() -> bool:
    """Whether this process's cluster runs hosts (stateful or sim mode, not FaaS)."""
    return _faas() is None


def sim_world() -> Any:
    """The simulated world of this process (sim mode), or None."""
    from .._ref import current_invoker

    invoker = current_invoker()
    return invoker if getattr(invoker, "mode", "") == "sim" else None


def _environment(faas: Any, target: str) -> dict[str, Any]:
    """FaaS mode's process for ``target``: the environment running an invocation of that
    identity now, else one running its type, else an idle one of its type."""
    type_name = target.split("/", 1)[0]
    envs = [e for e in faas.processes() if str(e["function"]) == f"actor:{type_name}"]
    for pick in ([e for e in envs if e["running"] == target], [e for e in envs if e["running"]], envs):
        if pick:
            return {**pick[0], "host_id": f"env-{pick[0]['env']}"}
    raise NotFound(f"no execution environment of {type_name} is live (FaaS mode: nothing to kill or pause)")


def host_info(target: str) -> dict[str, Any]:
    """The info of the host that ``target`` (an address or a host id) names now; in FaaS
    mode, of an execution environment of its type (see ``_environment``)."""
    import ray

    if not isinstance(target, str) or not target:
        raise FluentError(f"a host fault names an identity ('Type/key') or a host id, not {target!r}")
    faas = _faas()
    if faas is not None:
        if "/" not in target:
            raise FluentError(f"FaaS mode has no hosts: name an identity ('Type/key'), not {target!r}")
        return _environment(faas, target)
    if "/" not in target:
        for info in _hosts():
            if info["host_id"] == target:
                return info
        raise NotFound(f"no host {target!r}")
    type_name, key = target.split("/", 1)
    directory = _directory()
    deadline = time.monotonic() + 30.0
    while True:  # a host being restarted owns nothing for a moment
        route = ray.get(directory.lookup.remote(type_name))
        partition = shard_for(key, route.shards)
        placed = ray.get(directory.placement.remote(type_name))
        for info in _hosts():
            if info["group"] == route.group and partition in placed.get(info["host_id"], ()):
                return info
        if time.monotonic() > deadline:
            raise NotFound(f"no host serves {target!r} (is its type started?)")
        time.sleep(0.1)


def _signal(node_id: str, pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid`` on node ``node_id`` (here, or by a task placed on that node)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if node_id == ray.get_runtime_context().get_node_id():
        os.kill(pid, sig)
        return
    there: Any = ray.remote(_send)
    strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
    ray.get(there.options(num_cpus=0, scheduling_strategy=strategy).remote(pid, sig), timeout=30)


def _send(pid: int, sig: int) -> None:
    os.kill(pid, sig)


def kill(target: str) -> int:
    """SIGKILL the host process serving ``target`` (Ray restarts it); returns its pid. In
    sim mode: a simulated crash of its host (returns how many identities it held)."""
    world = sim_world()
    if world is not None:
        return int(world.crash(target))
    info = host_info(target)
    pid = int(info["pid"])
    try:
        _signal(str(info["node_id"]), pid, signal.SIGKILL)
    except ProcessLookupError:
        raise NotFound(f"the process serving {target} (pid {pid}) is gone already") from None
    return pid


def pause(target: str, seconds: float) -> int:
    """Stop the host process serving ``target`` for ``seconds`` (SIGSTOP, then SIGCONT);
    returns its pid at once."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not 0 < seconds < 3600:
        raise FluentError(f"pause takes seconds in (0, 3600), not {seconds!r}")
    world = sim_world()
    if world is not None:  # its host holds what arrives, for that long (virtual)
        world.pause(target, seconds)
        return 0
    info = host_info(target)
    pid, node = int(info["pid"]), str(info["node_id"])
    timer = threading.Timer(seconds, _resume, args=(pid,))
    timer.daemon = True
    with _lock:
        if pid in _paused:
            raise FluentError(f"host {info['host_id']} (pid {pid}) is paused already")
        try:
            _signal(node, pid, signal.SIGSTOP)
        except ProcessLookupError:
            raise NotFound(f"the process serving {target} (pid {pid}) is gone already") from None
        _paused[pid] = (node, timer)
    timer.start()
    return pid


def _resume(pid: int) -> None:
    with _lock:
        entry = _paused.pop(pid, None)
    if entry is not None:
        node, timer = entry
        timer.cancel()
        try:
            _signal(node, pid, signal.SIGCONT)
        except ProcessLookupError:  # it died while stopped (Ray restarts it): nothing to resume
            return


def resume_all() -> list[int]:
    """Resume every host this process paused; returns their pids."""
    with _lock:
        pids = list(_paused)
    for pid in pids:
        _resume(pid)
    return pids


def own_hosts(type_name: str, count: int, prefix: str) -> list[str]:
    """``count`` keys (``prefix`` and a number) of ``type_name`` whose partitions lie on
    ``count`` different hosts: the type is scaled to ``count`` hosts first (at most its
    ``max_hosts``, and its partitions at least ``count``)."""
    import ray

    from ..runtime._cluster import current

    world = sim_world()
    if world is not None:  # a simulated host each
        chosen = [f"{prefix}{j}" for j in range(count)]
        for k in chosen:
            world.placement[f"{type_name}/{k}"] = f"{type_name}/{k}#host"
        return chosen
    cluster = current()
    placed = cluster.scale(type_name, count)
    if len(placed) < count:
        raise FluentError(f"{type_name}: {count} hosts asked, {len(placed)} placed")
    partitions = int(ray.get(_directory().lookup.remote(type_name)).shards)
    owner = {p: hid for hid, parts in placed.items() for p in parts}
    keys: dict[str, str] = {}  # host id -> its key
    for j in range(100 * count + 1000):
        key = f"{prefix}{j}"
        hid = owner.get(shard_for(key, partitions))
        if hid is not None and hid not in keys:
            keys[hid] = key
            if len(keys) == count:
                return list(keys.values())
    raise FluentError(f"{type_name}: found keys on {len(keys)} of {count} hosts")
