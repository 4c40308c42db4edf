"""Benchmarks of the monthly run at Home Credit scale, next to the notebook pipeline it replaces.

Run ``python -m benchmarks.harness --help``; results land in ``benchmarks/results/``.
"""
