"""The page's Styles part: every style with its painting, and renaming or deleting the user's own.

Styles are found as ``styler styles`` finds them (:func:`styler.io.weights.list_styles`); only a
style of the user's weights folder can be renamed or deleted, never a bundled one. Names from
the page are looked up among the styles or checked against :data:`NAME`, never joined into a
path as given.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from styler.errors import ConfigError, StylerError
from styler.io.files import file_sha256
from styler.io.weights import LOCAL, WEIGHTS_SUFFIX, YOURS, Style, atomic_save_file, bundled_dir, \
    list_styles, short_reason
from styler.training.runs import RunDir, default_run_dir

log = logging.getLogger(__name__)

# A style name the page may create: it becomes ``<name>.safetensors`` and a run folder's name.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(f"style name {str(name)[:80]!r} is not allowed: use 1 to 64 letters, digits, '-' or '_', "
                          f"starting with a letter or digit")
    return name


def check_free(name: str, weights_dir: Path) -> None:
    """No style of this name, the user's or bundled (a new one would hide it)."""
    for style in list_styles(weights_dir):
        if style.name == name:
            whose = {YOURS: "one of your styles", LOCAL: f"a style in {LOCAL}"}.get(style.source, "a bundled style")
            raise ConfigError(f"{name!r} is already {whose}; pick another name")


def row(style: Style) -> dict[str, Any]:
    """What the page shows of a style."""
    entry: dict[str, Any] = {"name": style.name, "source": style.source, "bundled": style.bundled,
                             "hidden": style.shadowed}
    if style.info is None:
        return {**entry, "error": short_reason(style.error or StylerError("unreadable"), style.path)}
    meta = style.info.metadata
    return {**entry, "features": meta.get("features_source") or style.info.features,
            # Files from before steps_trained recorded the run's last step as "steps".
            "steps": meta.get("steps_trained", meta.get("steps")), "best_step": meta.get("best_step"),
            "created": meta.get("created_utc")}


def yours(name: str, weights_dir: Path) -> Style:
    """The user's readable-or-not style ``name``; one in ./weights or bundled is refused, saying why."""
    found = [s for s in list_styles(weights_dir) if s.name == name]
    mine = next((s for s in found if s.source == YOURS), None)
    if mine is not None:
        return mine
    if any(s.source == LOCAL for s in found):
        raise ConfigError(f"{name!r} is in {LOCAL}, which styler only reads: rename or delete the file there")
    if found:
        raise ConfigError(f"{name!r} is a bundled style: bundled styles cannot be renamed or deleted")
    raise ConfigError(f"no style of yours named {name[:80]!r}")


def delete_style(name: str, weights_dir: Path) -> None:
    yours(name, weights_dir).path.unlink()


def rename_style(name: str, new: Any, weights_dir: Path) -> Path:
    """Rename the user's style ``name`` to ``new``: a new file whose metadata carries the new name
    (outputs of ``styler apply`` are named after it), written atomically, then the old one removed."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    style = yours(name, weights_dir)
    new = check_name(new)
    if new == name:
        return style.path
    check_free(new, weights_dir)
    with safe_open(str(style.path), framework="pt") as fh:
        header = dict(fh.metadata() or {})
    target = style.path.with_name(f"{new}{WEIGHTS_SUFFIX}")
    atomic_save_file(load_file(str(style.path)), {**header, "style_name": new}, target)
    style.path.unlink()
    return target


class Paintings:
    """Finds the painting a style was trained on: the style image its run folder names, or (in a
    clone of the repository) the bundled styles' paintings in ``samples/styles``; a file counts
    only if its SHA-256 is the one the weights file records."""

    def __init__(self, runs_root: Path | None) -> None:
        self.runs_root = runs_root
        self._hashes: dict[tuple[Path, int, int], str] = {}

    def _sha256(self, path: Path) -> str:
        stat = path.stat()
        key = (path, stat.st_mtime_ns, stat.st_size)
        if key not in self._hashes:
            self._hashes[key] = file_sha256(path)
        return self._hashes[key]

    def _candidates(self, style: Style) -> list[Path]:
        meta = style.info.metadata if style.info else {}
        found = []
        run = RunDir(self.runs_root / style.name if self.runs_root else default_run_dir(style.name))
        if run.spec_path.is_file():
            try:
                found.append(run.read_spec().style)
            except ConfigError as exc:  # the style still lists, without its painting
                log.warning("no painting for %s: %s", style.name, exc)
        if meta.get("style_file"):  # in a clone; an installed copy has no samples/ beside the package
            found.append(bundled_dir().parent.parent / "samples" / "styles" / Path(str(meta["style_file"])).name)
        return found

    def find(self, style: Style) -> Path | None:
        wanted = style.info.metadata.get("style_sha256") if style.info else None
        for path in self._candidates(style):
            if wanted and path.is_file() and self._sha256(path) == wanted:
                return path
        return None
