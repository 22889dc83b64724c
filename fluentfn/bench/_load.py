"""What a figure was measured on: the machine's speed, and background load (``--load N``)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import timeit
from collections.abc import Iterator

MAX_LOAD = 64


def machine_ms() -> float:
    """``sum(range(10**6))`` in ms (best of 5): the same-machine yardstick printed with figures."""
    return min(timeit.repeat("sum(range(10**6))", number=1, repeat=5)) * 1000.0


@contextlib.contextmanager
def background_load(n: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``n`` busy processes (a Python loop each) while the block runs: a machine that is not idle."""
    if not 0 <= n <= MAX_LOAD:
        raise ValueError(f"--load takes 0 to {MAX_LOAD} busy processes, not {n}")
    busy = [
        subprocess.Popen(
            [sys.executable, "-c", "while True: pass"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    try:
        yield busy
    finally:
        for proc in busy:
            proc.kill()
        for proc in busy:
            proc.wait()
