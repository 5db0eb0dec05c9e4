"""Benchmarks that run the services against real backing servers (see BENCHMARKS.md)."""
