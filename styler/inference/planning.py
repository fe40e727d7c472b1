"""Which files a run stylizes and where each output goes.

Inputs are files, folders (searched recursively unless told otherwise) or glob patterns such as
``photos/**/*.jpg`` (quoted, so the shell leaves them to us). A folder or a pattern keeps its
tree under the output folder. Nothing here touches pixels; problems become per-file failures so
that one bad argument never stops the rest of the batch, and files a scan finds but cannot read
(camera raw, HEIC without its extra) are named rather than passed over.
"""

from __future__ import annotations

import glob
import os
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image, UnidentifiedImageError

from styler.config import IMAGE_EXTENSIONS, RAW_EXTENSIONS, VIDEO_EXTENSIONS, FolderConfig, OutputFormat
from styler.errors import ConfigError, StylerError
from styler.io.animation import is_animated
from styler.io.files import check_writable
from styler.io.images import can_save, find_images, holds_mark, is_heif_path, is_image_path, is_styler_output, \
    output_settings, require_heif
from styler.io.video import is_video_path, require_av

Pair = tuple[Path, Path]
Failure = tuple[Path, str]
_MAGIC = set("*?[")
RAW_REASON = "camera raw files are not read: export them as TIFF or JPEG from a raw editor first"


@dataclass
class Plan:
    """What a run will do, worked out before any pixel is decoded."""

    pairs: list[Pair] = field(default_factory=list)  # (input, output) of every file to stylize
    failures: list[Failure] = field(default_factory=list)  # inputs that cannot be stylized, with why
    # Files a folder scan or a glob found but cannot read (camera raw, HEIC without the extra,
    # videos without PyAV), with the reason: named rather than failed, so a folder run goes on.
    unsupported: list[Failure] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)  # where the outputs go, in input order
    named: Path | None = None  # the one output file the command named, when it named one


def _glob_root(pattern: str) -> Path:
    """The leading folders of ``pattern`` that contain no wildcard: the tree's root."""
    parts = Path(pattern).parts
    fixed = [p for p in parts[:next((i for i, p in enumerate(parts) if _MAGIC & set(p)), len(parts))]]
    return Path(*fixed) if fixed else Path(".")


def _out_root(root: Path, output: Path | None, style_name: str) -> Path:
    """Where a folder's (or glob's) tree goes: ``output``, else ``<root>_<style>`` beside it."""
    return Path(output) if output else root.resolve().parent / f"{root.resolve().name}_{style_name}"


def _not_outputs(files: list[Path], output: Path | None) -> list[Path]:
    """Drop what earlier runs wrote: files inside the output folder (``-o`` within the input
    folder) and images styler marked as its own, so rerunning a command resumes it."""
    out = Path(output).resolve() if output else None
    return [p for p in files if not (out is not None and p.resolve().is_relative_to(out))
            and not is_styler_output(p)]


def _with_format(dst: Path, fmt: OutputFormat, src: Path) -> Path:
    """``format`` applies to still images; videos, and animations when it cannot animate (jpg),
    keep theirs. A still GIF's 256 colours would band a stylized image: its output is a PNG.
    HEIC/HEIF is read, never written: the output is a JPEG, the camera's other format."""
    if is_video_path(dst) or (fmt is OutputFormat.JPG and is_animated(src)):
        return dst
    if fmt is OutputFormat.SAME:
        if is_heif_path(dst):
            return dst.with_suffix(".jpg")
        return dst.with_suffix(".png") if dst.suffix.lower() == ".gif" and not is_animated(src) else dst
    return dst.with_suffix(f".{fmt.value}")


def _names_a_folder(inputs: Sequence[Path | str], output: Path | str) -> tuple[bool, bool]:
    """(``output`` is a folder, the inputs are several): a trailing slash, an existing folder, or
    several inputs (a folder, a glob, more than one path) make it a folder."""
    text, out = str(output), Path(output)
    many = len(inputs) > 1 or any(Path(i).is_dir() or _MAGIC & set(str(i)) for i in inputs)
    return text.endswith(("/", os.sep)) or out.is_dir() or many, many


def output_folder(inputs: Sequence[Path | str], output: Path | str | None) -> bool:
    """Whether ``output`` is a folder, checked (and that it can be written) before any image is
    decoded. One file named without a type styler writes says how to name a file or a folder."""
    if output is None:
        return False
    text, out = str(output), Path(output)
    folder, many = _names_a_folder(inputs, output)
    if not folder:
        if not (can_save(out) or is_video_path(out)):
            stem = out.with_suffix("") if out.suffix else out
            raise ConfigError(f"output={text} is not an image or video file name; name a file such as "
                              f"{stem}.jpg, or a folder with a trailing slash: {stem}/")
        check_writable(out.parent, "output")
        return False
    _check_output_folder(text, out, named_like_a_file=many and not text.endswith(("/", os.sep)))
    return True


def _check_output_folder(text: str, out: Path, named_like_a_file: bool) -> None:
    """``output`` must be a folder: not an existing file, nor a new name with an image extension
    that several inputs would turn into a folder (``out.png``), and writable."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output={text}: is a file, but the outputs need a folder; pass a folder such as "
                          f"{out.with_suffix('')}/")
    if named_like_a_file and not out.exists() and is_image_path(out):
        raise ConfigError(f"output={text} names one image but the inputs are several; pass a folder such as "
                          f"{out.with_suffix('')}/")
    check_writable(out, "output")


def scan_reason(path: Path) -> str | None:
    """Why a file of a kind people stylize cannot be read here (camera raw; HEIC/HEIF without the
    ``heif`` extra; a video without PyAV), or None."""
    if path.suffix.lower() in RAW_EXTENSIONS:
        return RAW_REASON
    try:
        if is_heif_path(path):
            require_heif()
        elif is_video_path(path):
            require_av()
    except StylerError as exc:
        return str(exc)
    return None


def _unsupported(src: Path) -> str | None:
    """Why an explicitly named file cannot be stylized, or None. Videos go to PyAV, which says
    what is wrong with them."""
    reason = scan_reason(src)
    if reason or is_video_path(src):
        return reason
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # decoding decides about size
            with Image.open(src):
                pass
    except Image.DecompressionBombError:
        return None  # an image, a huge one: decoding it says so (or max_size shrinks it)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        if is_image_path(src):
            return None  # an unreadable image: decoding it reports the reason
        kinds = ", ".join(e.lstrip(".") for e in (*IMAGE_EXTENSIONS, ".heic", *VIDEO_EXTENSIONS))
        return f"not a supported image or video ({kinds})"
    return None


def _candidate(path: Path) -> bool:
    """Found by folder scans and globs: images, videos and camera raw files (the ones that cannot
    be read are named, not stylized)."""
    return is_image_path(path) or is_video_path(path) or path.suffix.lower() in RAW_EXTENSIONS


def plan(inputs: Sequence[Path | str], output: Path | str | None, style_name: str,
         config: FolderConfig | None = None) -> Plan:
    """Pair every input image with its output path; bad inputs are failures, and files a scan
    found but cannot read are listed as unsupported.

    One image: ``output`` or ``<stem>_<style><ext>`` beside it. A folder or glob: every image
    below it, under ``output`` (default ``<folder>_<style>``) with the same relative paths.
    Several inputs, or ``output`` ending in a slash: ``output`` is a folder. A bad ``output``
    (a file where a folder is needed, no file type, not writable) raises :class:`ConfigError`
    up front.
    """
    config = config or FolderConfig()
    folder = output_folder(inputs, output)
    out = Path(output) if output is not None else None
    result = Plan(named=None if folder else out)
    for item in inputs:
        _plan_one(result, item, out, style_name, config.recursive, folder)
    result.pairs, result.failures = _check_pairs(
        [(s, _with_format(d, config.format, s)) for s, d in result.pairs], result.failures)
    return result


def plan_outputs(inputs: Sequence[Path | str], output: Path | str | None, style_name: str,
                 config: FolderConfig | None = None) -> tuple[list[Pair], list[Failure]]:
    """The (pairs, failures) of :func:`plan`."""
    planned = plan(inputs, output, style_name, config)
    return planned.pairs, planned.failures


def _plan_one(result: Plan, item: Path | str, output: Path | None, style_name: str, recursive: bool,
              folder: bool) -> None:
    """Add what one input (a file, a folder or a glob pattern) brings to ``result``."""
    src = Path(item)
    if src.is_file():
        reason = _unsupported(src)
        if reason:
            result.failures.append((src, reason))
            return
        dst = _file_output(src, output, style_name, folder)
        result.pairs.append((src, dst))
        _add_folder(result, dst.parent)
    elif src.is_dir():
        _add_found(result, src, find_images(src, recursive, _candidate), output, style_name)
    elif _MAGIC & set(str(item)):
        found = sorted(Path(p) for p in glob.glob(str(item), recursive=recursive)
                       if _candidate(Path(p)) and os.path.isfile(p))
        if not found:
            result.failures.append((src, "no image files match this pattern"))
        _add_found(result, _glob_root(str(item)), found, output, style_name)
    else:
        result.failures.append((src, "no such file or directory"))


def _add_found(result: Plan, root: Path, found: list[Path], output: Path | None, style_name: str) -> None:
    """A scan's files: the unreadable ones named, the others (but earlier outputs) paired."""
    reasons = {p: scan_reason(p) for p in found}
    result.unsupported += [(p, r) for p, r in reasons.items() if r]
    readable = _not_outputs([p for p, r in reasons.items() if not r], output)
    result.pairs += _tree(root, readable, output, style_name)
    _add_folder(result, _out_root(root, output, style_name))


def _tree(root: Path, files: list[Path], output: Path | None, style_name: str) -> list[Pair]:
    """``root``'s files under its output root, with the same relative paths."""
    out_root = _out_root(root, output, style_name)
    return [(p, out_root / p.relative_to(root)) for p in files]


def _add_folder(result: Plan, folder: Path) -> None:
    if folder not in result.folders:
        result.folders.append(folder)


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
        if not (can_save(dst) or is_video_path(dst)):
            failures.append((src, f"output {dst} is not a file type styler writes"))
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


def split_existing(pairs: Sequence[Pair], overwrite: bool, settings: str | None = None,
                   named: Path | None = None) -> tuple[list[Pair], list[Pair]]:
    """(to do, skipped): an output that already exists is skipped when it is the same work, so a
    rerun resumes. It is redone with ``overwrite``; when it is the one output the command
    ``named`` (the user asked for that file again); or when styler recorded other ``settings``
    in it than the run's (:meth:`styler.inference.stylizer.Stylizer.settings`). A file styler did
    not write is replaced only with ``overwrite``; naming one is an error."""
    todo: list[Pair] = []
    skipped: list[Pair] = []
    for src, dst in pairs:
        redo = overwrite or not dst.exists()
        if not redo and named is not None and dst == named:
            _check_replaceable(src, dst)
            redo = True
        if not redo and settings is not None:
            recorded = output_settings(dst)
            redo = bool(recorded) and recorded != settings  # "": marked before settings were recorded
        (todo if redo else skipped).append((src, dst))
    return todo, skipped


def _check_replaceable(src: Path, dst: Path) -> None:
    """A named output that exists is replaced when styler wrote it. Only still images carry the
    mark; a video or an animation is replaced as named."""
    if holds_mark(dst) and not is_video_path(src) and not is_animated(src) and not is_styler_output(dst):
        raise ConfigError(f"output={dst} exists and styler did not write it; pass overwrite=True to replace it")


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
