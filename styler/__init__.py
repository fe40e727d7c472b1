"""styler: fast neural style transfer with a small per-style generator.

The code lives in rooms: :mod:`styler.nn` (networks), :mod:`styler.io` (files),
:mod:`styler.training`, :mod:`styler.inference` and :mod:`styler.cli`; see docs/layout.md.
"""

from __future__ import annotations

from styler._version import __version__

__all__ = ["Stylizer", "__version__", "list_styles"]


def __getattr__(name: str):
    # Lazy so that `import styler` (and `styler --version`) does not import torch.
    if name == "Stylizer":
        from styler.inference.stylizer import Stylizer

        return Stylizer
    if name == "list_styles":
        from styler.io.weights import list_styles

        return list_styles
    raise AttributeError(f"module 'styler' has no attribute {name!r}")
