"""Benchmarks: scripts that measure the product on real data and write bench/results/*.json."""
