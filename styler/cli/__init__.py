"""Command-line interface: a thin Click layer over :mod:`styler.training` and :mod:`styler.inference`.

One module per command (train, apply, export, sheet, styles) over the shared options and output
helpers of :mod:`styler.cli.common`; :mod:`styler.cli.app` assembles the group.
"""

from styler.cli.app import main

__all__ = ["main"]
