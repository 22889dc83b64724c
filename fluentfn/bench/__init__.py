"""Benchmarks: programs that print ratios against peers measured in the same run."""
