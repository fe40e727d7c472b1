"""Which files a run stylizes and where each output goes.

Inputs are files, folders (searched recursively unless told otherwise) or glob patterns such as
``photos/**/*.jpg`` (quoted, so the shell leaves them to us). A folder or a pattern keeps its
tree under the output folder. Nothing here touches pixels; problems become per-file failures so
that one bad argument never stops the rest of the batch.
"""

from __future__ import annotations

import glob
import os
import warnings
import zlib
from pathlib import Path
from typing import Sequence

from PIL import Image, UnidentifiedImageError

from styler.config import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, FolderConfig, OutputFormat
from styler.errors import ConfigError
from styler.io.animation import is_animated
from styler.io.files import check_writable
from styler.io.images import find_images, is_image_path, is_styler_output
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


def _not_outputs(files: list[Path], output: Path | None) -> list[Path]:
    """Drop what earlier runs wrote: files inside the output folder (``-o`` within the input
    folder) and images styler marked as its own, so rerunning a command resumes it."""
    out = Path(output).resolve() if output else None
    return [p for p in files if not (out is not None and p.resolve().is_relative_to(out))
            and not is_styler_output(p)]


def _with_format(dst: Path, fmt: OutputFormat, src: Path) -> Path:
    """``--format`` applies to still images; videos, and animations when it cannot animate (jpg),
    keep theirs. A still GIF's 256 colours would band a stylized image: its output is a PNG."""
    if is_video_path(dst) or (fmt is OutputFormat.JPG and is_animated(src)):
        return dst
    if fmt is OutputFormat.SAME:
        return dst.with_suffix(".png") if dst.suffix.lower() == ".gif" and not is_animated(src) else dst
    return dst.with_suffix(f".{fmt.value}")


def output_folder(inputs: Sequence[Path | str], output: Path | str | None) -> bool:
    """Whether ``-o`` is a folder, checked before any image is decoded: a trailing slash, an
    existing folder, or several inputs (a folder, a glob, more than one path) make it one."""
    if output is None:
        return False
    text, out = str(output), Path(output)
    slash = text.endswith(("/", os.sep))
    many = len(inputs) > 1 or any(Path(i).is_dir() or _MAGIC & set(str(i)) for i in inputs)
    if not (slash or out.is_dir() or many):
        check_writable(out.parent, "-o")
        return False
    _check_output_folder(text, out, named_like_a_file=many and not slash)
    return True


def _check_output_folder(text: str, out: Path, named_like_a_file: bool) -> None:
    """``-o`` must be a folder: not an existing file, nor a new name with an image extension that
    several inputs would turn into a folder (``-o out.png``), and writable."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {text}: is a file, but the outputs need a folder; pass a folder such as "
                          f"{out.with_suffix('')}/")
    if named_like_a_file and not out.exists() and is_image_path(out):
        raise ConfigError(f"-o {text} names one image but the inputs are several; pass a folder such as "
                          f"{out.with_suffix('')}/")
    check_writable(out, "-o")


def _unsupported(src: Path) -> str | None:
    """Why an explicitly named file cannot be stylized, or None. Videos go to PyAV, which says
    what is wrong with them (or names the extra to install)."""
    if is_video_path(src):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # decoding decides about size
            with Image.open(src):
                pass
    except Image.DecompressionBombError:
        return None  # an image, a huge one: decoding it says so (or --max-size shrinks it)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        if is_image_path(src):
            return None  # an unreadable image: decoding it reports the reason
        kinds = ", ".join(e.lstrip(".") for e in (*IMAGE_EXTENSIONS, *VIDEO_EXTENSIONS))
        return f"not a supported image or video ({kinds})"
    return None


def plan_outputs(inputs: Sequence[Path | str], output: Path | str | None, style_name: str,
                 config: FolderConfig | None = None) -> tuple[list[Pair], list[Failure]]:
    """Pair every input image with its output path; bad inputs are returned as failures.

    One image: ``output`` or ``<stem>_<style><ext>`` beside it. A folder or glob: every image
    below it, under ``output`` (default ``<folder>_<style>``) with the same relative paths.
    Several inputs, or ``output`` ending in a slash: ``output`` is a folder. A bad ``output``
    (a file where a folder is needed, not writable) raises :class:`ConfigError` up front.
    """
    config = config or FolderConfig()
    folder = output_folder(inputs, output)
    output = Path(output) if output is not None else None
    pairs: list[Pair] = []
    failures: list[Failure] = []
    for item in inputs:
        found, bad = _pairs_for(item, output, style_name, config.recursive, folder)
        pairs += found
        failures += bad
    return _check_pairs([(s, _with_format(d, config.format, s)) for s, d in pairs], failures)


def _pairs_for(item: Path | str, output: Path | None, style_name: str, recursive: bool,
               folder: bool) -> tuple[list[Pair], list[Failure]]:
    """The pairs (or the failure) of one input: a folder, a file or a glob pattern."""
    src = Path(item)
    if src.is_dir():
        return _tree(src, _not_outputs(find_images(src, recursive, is_media_path), output), output, style_name), []
    if src.is_file():
        reason = _unsupported(src)
        return ([], [(src, reason)]) if reason else ([(src, _file_output(src, output, style_name, folder))], [])
    if _MAGIC & set(str(item)):
        found = _not_outputs(sorted(Path(p) for p in glob.glob(str(item), recursive=recursive)
                                    if is_media_path(Path(p)) and os.path.isfile(p)), output)
        failures = [] if found else [(src, "no image files match this pattern")]
        return _tree(_glob_root(str(item)), found, output, style_name), failures
    return [], [(src, "no such file or directory")]


def _file_output(src: Path, output: Path | None, style_name: str, folder: bool) -> Path:
    if output is None:
        return src.with_name(f"{src.stem}_{style_name}{src.suffix}")
    return output / src.name if folder else output


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


def take_shard(pairs: Sequence[Pair], shard: tuple[int, int] | None,
               inputs: Sequence[Path | str] = ()) -> list[Pair]:
    """The pairs of slice K of N. A stable hash of each input's path relative to its input folder
    (or glob root) decides, so every process agrees without talking to the others, even on
    machines that mount the data elsewhere, and the slices do not shift when files are added."""
    if shard is None or shard[1] == 1:
        return list(pairs)
    k, n = shard
    roots = sorted((Path(i) if Path(i).is_dir() else _glob_root(str(i)) for i in inputs
                    if Path(i).is_dir() or _MAGIC & set(str(i))), key=lambda p: -len(p.parts))
    return [p for p in pairs if zlib.crc32(_shard_key(p[0], roots).encode("utf-8", "surrogateescape")) % n == k]


def _shard_key(src: Path, roots: Sequence[Path]) -> str:
    for root in roots:  # the deepest root first
        if src.is_relative_to(root):
            return src.relative_to(root).as_posix()
    return src.name
