"""Benchmarks that print tables; results are recorded in docs/benchmarks.md."""
