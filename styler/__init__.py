"""styler: fast neural style transfer with a small per-style generator."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Stylizer", "__version__"]


def __getattr__(name: str):
    # Lazy so that `import styler` (and `styler --version`) does not import torch.
    if name == "Stylizer":
        from styler.apply import Stylizer

        return Stylizer
    raise AttributeError(f"module 'styler' has no attribute {name!r}")
