"""The activation benchmark's floor: a plain Python loop doing what an activation must.

It imports nothing of fluentfn (nor Ray, nor gRPC), so that ``activation.fresh_floor`` can
run this file as a script in a fresh interpreter: what a plain script gets. The rate of the same
loop depends on the process it runs in, through the cyclic collector: its 100,000 new
objects trigger collections, and each full one walks every object the process holds. In
the benchmark's own process after its cluster shut down (Ray's and gRPC's ~300,000
objects handed back to the collector) it ran at half the rate of a fresh interpreter.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any


class Cell:
    """The activated identity: ``__init__`` sets one attribute; ``touch`` does nothing."""

    def __init__(self) -> None:
        self.value = 0

    def touch(self) -> None:
        pass


def floor(count: int) -> float:
    """Make the instance and run ``__init__``, insert it in a dict, look it up and call its
    method, ``count`` times in this process: per second."""
    table: dict[str, Any] = {}
    t0 = time.perf_counter()
    for i in range(count):
        key = f"c{i}"
        table[key] = Cell()
        table[key].touch()
    return count / (time.perf_counter() - t0)


if __name__ == "__main__":
    _count, _rounds = int(sys.argv[1]), int(sys.argv[2])
    print(statistics.median(floor(_count) for _ in range(_rounds)))
