"""Benchmarks and quality comparisons for styler (scripts, not part of the installed package).

Run them from the repository root with ``PYTHONPATH=.``, e.g.
``OMP_WAIT_POLICY=PASSIVE PYTHONPATH=. python -m benchmarks.bench_apply --sizes 256 512``.

OpenMP threads that spin while waiting are ruinous when other processes share the cores (on the
shared 2-core machine a 512 px forward took 1.6-3.6 s spinning and 0.6 s passive, see
docs/performance.md), so set ``OMP_WAIT_POLICY=PASSIVE`` on a shared machine (it must be set
before torch loads OpenMP, so in the shell; ``gpu_check.sh`` does). Importing this package
changes nothing in the environment.
"""
