"""``fluentfn bench activation``: how cheap a virtual actor is, vs a Ray actor.

``fluentfn``: identities of a one-shard type activated by bulk calls (one message per
shard) from a co-located actor in the same host, in batches, up to 1,000,000
(``--quick``: 100,000); activations per second on that one host and resident memory
per idle identity. ``ray-actor``: Ray actors created and awaited; actors per second and
resident memory per actor (a worker process each). ``python-floor``: the same work as a
plain Python loop (``_floorloop.py``) in a fresh interpreter, the figure a ratio is judged
against; ``python-floor-in-this-process``: the same loop here, after the cluster, where the
collector walks what Ray and gRPC left (half the rate).
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import fluentfn as ff

from ..testing import host_of
from . import _floorloop, _report

Cell = ff.actor(name="BenchCell", shards=1, persist="never", idle_timeout_s=3600.0)(_floorloop.Cell)  # the floor's work


class _Spawner:
    def spawn(self, start: int, count: int) -> float:
        """Activate cells start..start+count with one bulk call; seconds it took."""
        keys = {f"c{i}": () for i in range(start, start + count)}
        t0 = time.perf_counter()
        Cell.bulk("touch", keys)
        return time.perf_counter() - t0


Spawner = ff.actor(name="BenchSpawner", colocate_with=Cell, persist="never")(_Spawner)


def _ray_actors(count: int) -> dict[str, Any]:
    import ray

    @ray.remote(num_cpus=0)
    class Plain:
        def pid(self) -> int:
            import os

            return os.getpid()

        def rss(self) -> int:
            from ..runtime._hostactor import rss_bytes

            return rss_bytes()

    t0 = time.perf_counter()
    actors = [Plain.remote() for _ in range(count)]  # type: ignore[attr-defined]
    ray.get([a.pid.remote() for a in actors])
    elapsed = time.perf_counter() - t0
    rss = ray.get([a.rss.remote() for a in actors])
    for a in actors:
        ray.kill(a)
    return {
        "system": "ray-actor",
        "created": count,
        "activations_per_s": round(count / elapsed, 1),
        "bytes_per_identity": int(sum(rss) / len(rss)),
    }


def fresh_floor(count: int, rounds: int = 3) -> float:
    """The floor loop (``_floorloop.floor``) in a fresh interpreter, that file run as a
    script (``-I``: nothing of its directory; Python's own collector settings): the median
    of ``rounds`` runs of ``count``, per second."""
    cmd = [sys.executable, "-I", _floorloop.__file__, str(count), str(rounds)]
    return float(_report.last_line(cmd, "the floor loop"))


def run(quick: bool) -> tuple[list[dict[str, Any]], list[str]]:
    total = 100_000 if quick else 1_000_000
    batch = 10_000
    rows: list[dict[str, Any]] = []
    with ff.init() as cluster:
        Cell["warm"].touch()
        before = host_of(cluster, Cell["warm"])["rss_bytes"]
        spawner = Spawner["warm"]  # same host as the cells: the driver does not share the CPU
        done, elapsed = 0, 0.0
        while done < total:
            elapsed += spawner.spawn(done, batch)
            done += batch
        info = host_of(cluster, Cell["warm"])
        rows.append(
            {
                "system": "fluentfn",
                "created": done,
                "activations_per_s": round(done / elapsed),
                "bytes_per_identity": int((info["rss_bytes"] - before) / done),
                "live": info["live"],
            }
        )
        rows.append(_ray_actors(8 if quick else 24))
    # The floor loop in a fresh interpreter: in this process, after the cluster, the
    # collector walks Ray's and gRPC's objects, and the same loop ran at half the rate.
    floor = round(fresh_floor(total))
    rows.append({"system": "python-floor", "created": total, "activations_per_s": floor})
    here = round(statistics.median(_floorloop.floor(total) for _ in range(3)))
    rows.append({"system": "python-floor-in-this-process", "created": total, "activations_per_s": here})
    fl, ra = rows[0], rows[1]
    notes = [
        f"fluentfn: {fl['activations_per_s']} activations/s on one host, 1/{floor / fl['activations_per_s']:.1f} of "
        f"the same-run Python floor loop in a fresh interpreter ({floor}/s; target >= 1/10), "
        f"{fl['bytes_per_identity']} B per idle identity (target <= 2 KB)",
        f"the same loop in this process after its cluster (how earlier rounds measured the floor): {here}/s, "
        f"1/{here / fl['activations_per_s']:.1f}",
        f"vs ray actors: {fl['activations_per_s'] / ra['activations_per_s']:.0f}x faster to create, "
        f"{ra['bytes_per_identity'] / max(1, fl['bytes_per_identity']):.0f}x less memory",
    ]
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    return _report.cli("activation", __doc__, run, "activations_per_s", argv)
