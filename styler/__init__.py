"""styler: fast neural style transfer with a small per-style generator.

The code lives in rooms: :mod:`styler.nn` (networks), :mod:`styler.io` (files),
:mod:`styler.training`, :mod:`styler.inference` and :mod:`styler.cli`; see the README's
"How the code is laid out".
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"

__all__ = ["Stylizer", "__version__"]

# Old module paths of the flat layout -> where that code lives now. Importing an old path gives
# the new module itself (same object, so monkeypatching and isinstance behave), for one release;
# the old files are gone so git follows each file to its new place.
MOVED_MODULES = {
    "styler.apply": "styler.inference.stylizer",
    "styler.checkpoint": "styler.io.weights",
    "styler.distributed": "styler.training.distributed",
    "styler.export": "styler.inference.export",
    "styler.features": "styler.nn.vgg",
    "styler.fileio": "styler.io.files",
    "styler.images": "styler.io.images",
    "styler.losses": "styler.training.losses",
    "styler.models": "styler.nn",
    "styler.models.discriminator": "styler.nn.discriminator",
    "styler.models.generator": "styler.nn.generator",
    "styler.pipeline": "styler.inference.pipeline",
    "styler.planning": "styler.inference.planning",
    "styler.previews": "styler.training.previews",
    "styler.resume": "styler.training.resume",
    "styler.runs": "styler.training.runs",
    "styler.sheet": "styler.inference.sheet",
    "styler.tiling": "styler.inference.tiling",
    "styler.train": "styler.training.trainer",
    "styler.validation": "styler.training.validation",
    "styler.vgg_files": "styler.nn.vgg_files",
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves an old module path to the module that replaced it."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED_MODULES else None

    def create_module(self, spec):
        module = importlib.import_module(MOVED_MODULES[spec.name])
        spec.loader_state = module.__spec__  # the import system stamps the old name's spec on it
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = module.__spec__.loader_state  # give the module its own spec back


if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
    sys.meta_path.insert(0, _MovedModules())  # before path finders that may still see old files


def __getattr__(name: str):
    # Lazy so that `import styler` (and `styler --version`) does not import torch.
    if name == "Stylizer":
        from styler.inference.stylizer import Stylizer

        return Stylizer
    raise AttributeError(f"module 'styler' has no attribute {name!r}")
