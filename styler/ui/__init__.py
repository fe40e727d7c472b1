"""``styler ui``: a local web page over the library: try every style on your photos, train your
own, and manage your styles. It needs the ``ui`` extra (Starlette and uvicorn); the page itself
is plain HTML, CSS and JavaScript in ``static/``, with no build step.

The page calls the same functions as the CLI: :class:`styler.inference.stylizer.Stylizer` and
:mod:`styler.inference.sheet` for pictures, :class:`styler.training.trainer.Trainer` for training,
:mod:`styler.io.weights` for the styles.
"""

from __future__ import annotations

import importlib

from styler.errors import StylerError

MISSING_EXTRA = "the web page needs: pip install 'styler[ui]'"


def require_extra() -> None:
    """Raise one clear error when Starlette or uvicorn is not installed."""
    for module in ("starlette", "uvicorn"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise StylerError(f"{MISSING_EXTRA} ({module} is missing)") from exc
