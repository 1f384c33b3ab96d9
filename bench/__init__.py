"""Benchmarks: each runs Zoll beside a peer on this machine and prints ratios."""
