"""Benchmarks of roster against a minimal "floor" app on the same machine, in the same run.

Development tooling, not part of the service: `uv run python -m bench` (see README.md).
"""
