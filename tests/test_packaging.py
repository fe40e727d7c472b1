"""pyproject.toml states what the code needs; the package's modules are laid out as docs/layout.md
says (regular packages, imports pointing one way)."""

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "styler"


def _imports(path: Path) -> list[str]:
    """Absolute module names ``path`` imports, at any depth (lazy imports included)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _normal(name: str) -> str:
    """A distribution name as PEP 503 compares them: pillow_heif, Pillow-HEIF and pillow-heif are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _name(requirement: str) -> str:
    return _normal(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])


def test_every_package_styler_imports_is_declared_and_none_is_capped():
    from importlib.metadata import packages_distributions

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = project["dependencies"]
    declared = {_name(req) for req in required}
    declared |= {_name(req) for extra in project["optional-dependencies"].values() for req in extra}
    distributions = packages_distributions()
    for path in sorted(PACKAGE.rglob("*.py")):
        for module in _imports(path):
            top = module.split(".")[0]
            if top == "styler" or top in sys.stdlib_module_names:
                continue
            assert {_normal(d) for d in distributions.get(top, [top])} & declared, (path, module)
    # A cap at a patch release blocks every bug-fix release after it.
    assert all("<" not in req for req in required), required


def test_every_folder_of_the_package_is_a_regular_package():
    """Tools and type checkers see styler.io, styler.nn, styler.training, ... as packages."""
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    for folder in sorted(folders):
        name = ".".join(folder.relative_to(ROOT).parts)
        assert importlib.util.find_spec(name).origin == str(folder / "__init__.py"), name


# cli -> ui -> training / inference -> nn -> io -> config, errors, device, heap (and _version): each
# module imports only from its own layer or those below, never from the package root (its front door).
LAYERS = {"cli": 5, "ui": 4, "training": 3, "inference": 3, "nn": 2, "io": 1, "config": 0, "errors": 0,
          "device": 0, "heap": 0, "_version": 0}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 6) if len(parts) > 1 else 6  # the package root sits above all


def test_imports_point_one_way():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if len(parts) == 2 and parts[1] in ("__init__", "__main__"):
            continue  # the root itself
        own = _layer(".".join(parts))
        upward = [m for m in _imports(path) if m.split(".")[0] == "styler" and _layer(m) > own]
        assert not upward, (path, upward)
