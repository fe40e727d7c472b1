"""Benchmarks and quality comparisons for styler (scripts, not part of the installed package).

Run them from the repository root with ``PYTHONPATH=.``, e.g.
``PYTHONPATH=. python -m benchmarks.bench_apply --sizes 256 512``.

OpenMP threads that spin while waiting are ruinous when other processes share the cores (on the
shared 2-core machine a 512 px forward took 1.6-3.6 s spinning and 0.6 s passive, see
docs/performance.md), so the scripts default to passive waiting. It must be set before torch
loads OpenMP, hence here; set ``OMP_WAIT_POLICY=ACTIVE`` yourself on an idle machine.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
