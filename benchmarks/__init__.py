"""Benchmarks: run on the lead's GPU machine, recorded in BENCHMARKS.md (never timed in unit tests)."""
