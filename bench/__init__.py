"""Benchmarks: one script per area, each printing one JSON object."""
