"""Benchmarks and quality comparisons for styler (scripts, not part of the installed package).

Run them from the repository root with ``PYTHONPATH=.``, e.g.
``PYTHONPATH=. python -m benchmarks.bench_apply --sizes 256 512``.
"""
