"""Tiny builders and size presets used by tests and benchmarks."""
