"""Which files a run stylizes and where each output goes.

Inputs are files, folders (searched recursively unless told otherwise) or glob patterns such as
``photos/**/*.jpg`` (quoted, so the shell leaves them to us). A folder or a pattern keeps its
tree under the output folder. Nothing here touches pixels; problems become per-file failures so
that one bad argument never stops the rest of the batch.
"""

from __future__ import annotations

import glob
import os
import zlib
from pathlib import Path
from typing import Sequence

from styler.config import FolderConfig, OutputFormat
from styler.errors import ConfigError
from styler.io.animation import is_animated
from styler.io.images import find_images, is_image_path
from styler.io.video import is_media_path, is_video_path

Pair = tuple[Path, Path]
Failure = tuple[Path, str]
_MAGIC = set("*?[")


def _glob_root(pattern: str) -> Path:
    """The leading folders of ``pattern`` that contain no wildcard: the tree's root."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[:next((i for i, p in enumerate(parts) if _MAGIC & set(p)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def _tree(root: Path, files: list[Path], output: Path | None, style_name: str) -> list[Pair]:
    """``root``'s files under ``output`` (default ``<root>_<style>`` beside it), same relative paths."""
    out_root = Path(output) if output else root.resolve().parent / f"{root.resolve().name}_{style_name}"
    return [(p, out_root / p.relative_to(root)) for p in files]


def _with_format(dst: Path, fmt: OutputFormat, src: Path) -> Path:
    """``--format`` applies to still images; videos, and animations when it cannot animate (jpg), keep theirs."""
    if fmt is OutputFormat.SAME or is_video_path(dst) or (fmt is OutputFormat.JPG and is_animated(src)):
        return dst
    return dst.with_suffix(f".{fmt.value}")


def plan_outputs(inputs: Sequence[Path | str], output: Path | None, style_name: str,
                 config: FolderConfig | None = None) -> tuple[list[Pair], list[Failure]]:
    """Pair every input image with its output path; bad inputs are returned as failures.

    One image: ``output`` or ``<stem>_<style><ext>`` beside it. A folder or glob: every image
    below it, under ``output`` (default ``<folder>_<style>``) with the same relative paths.
    Several inputs: ``output`` is a folder.
    """
    config = config or FolderConfig()
    pairs: list[Pair] = []
    failures: list[Failure] = []
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file()
    for item in inputs:
        found, bad = _pairs_for(item, output, style_name, config.recursive, single_file)
        pairs += found
        failures += bad
    return _check_pairs([(s, _with_format(d, config.format, s)) for s, d in pairs], failures)


def _pairs_for(item: Path | str, output: Path | None, style_name: str, recursive: bool,
               single_file: bool) -> tuple[list[Pair], list[Failure]]:
    """The pairs (or the failure) of one input: a folder, a file or a glob pattern."""
    src = Path(item)
    if src.is_dir():
        return _tree(src, find_images(src, recursive, is_media_path), output, style_name), []
    if src.is_file():
        return [(src, _file_output(src, output, style_name, single_file))], []
    if _MAGIC & set(str(item)):
        found = sorted(Path(p) for p in glob.glob(str(item), recursive=recursive)
                       if is_media_path(Path(p)) and os.path.isfile(p))
        failures = [] if found else [(src, "no image files match this pattern")]
        return _tree(_glob_root(str(item)), found, output, style_name), failures
    return [], [(src, "no such file or directory")]


def _file_output(src: Path, output: Path | None, style_name: str, single_file: bool) -> Path:
    if single_file and output and not Path(output).is_dir():
        return Path(output)
    if output:
        return Path(output) / src.name
    return src.with_name(f"{src.stem}_{style_name}{src.suffix}")


def _check_pairs(pairs: list[Pair], failures: list[Failure]) -> tuple[list[Pair], list[Failure]]:
    """Drop pairs that would overwrite an input, write a non-image, or collide with another."""
    kept: list[Pair] = []
    inputs = {src.resolve() for src, _ in pairs}
    claimed: dict[Path, Path] = {}
    for src, dst in pairs:
        target = dst.resolve()
        if not (is_image_path(dst) or is_video_path(dst)):
            failures.append((src, f"output {dst} has no image extension"))
        elif target == src.resolve():
            failures.append((src, "output path is the input path; refusing to overwrite the input"))
        elif target in inputs:
            failures.append((src, f"output {dst} is another input; refusing to overwrite it"))
        elif target in claimed:
            failures.append((src, f"output {dst} would also be written from {claimed[target]}"))
        else:
            claimed[target] = src
            kept.append((src, dst))
    return kept, failures


def split_moving(pairs: Sequence[Pair]) -> tuple[list[Pair], list[Pair]]:
    """(still images, videos and animated images) of planned pairs: the moving ones go through
    :mod:`styler.inference.video` one at a time, the still ones through the batch pipeline."""
    moving = [p for p in pairs if is_video_path(p[0]) or is_animated(p[0])]
    return [p for p in pairs if p not in moving], moving


def split_existing(pairs: Sequence[Pair], overwrite: bool) -> tuple[list[Pair], list[Pair]]:
    """(to do, skipped): outputs that already exist are skipped unless ``overwrite``."""
    if overwrite:
        return list(pairs), []
    todo = [p for p in pairs if not p[1].exists()]
    return todo, [p for p in pairs if p[1].exists()]


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (0-based K, as torchrun's RANK) -> (K, N)."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError as exc:
        raise ConfigError(f"shard must look like K/N (for example 0/4), got {text!r}") from exc
    if not (n >= 1 and 0 <= k < n):
        raise ConfigError(f"shard must be K/N with 0 <= K < N (K counts from 0), got {text!r}")
    return k, n


def shard_from_env() -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) under torchrun (or any launcher that sets both), else None."""
    rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
    if rank is None or world is None:
        return None
    return parse_shard(f"{rank}/{world}")


def take_shard(pairs: Sequence[Pair], shard: tuple[int, int] | None) -> list[Pair]:
    """The pairs of slice K of N. A stable hash of the input path decides, so every process
    agrees without talking to the others, and the slices do not shift when files are added."""
    if shard is None or shard[1] == 1:
        return list(pairs)
    k, n = shard
    return [p for p in pairs if zlib.crc32(p[0].as_posix().encode("utf-8", "surrogateescape")) % n == k]
