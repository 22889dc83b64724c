"""``python -m fluentfn.bench NAME [--quick] [--out DIR]``."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("latency", "throughput", "activation", "reliability", "paper", "turns", "elastic", "sim", "cost")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m fluentfn.bench {{{','.join(BENCHMARKS)}}} [--quick] [--out DIR]")
        return 2
    module = importlib.import_module(f"fluentfn.bench.{argv[0]}")
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
