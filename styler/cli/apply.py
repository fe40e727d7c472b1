"""``styler apply``: stylize files, folders and patterns through the batch pipeline."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from styler.cli.apply_ray import RayRun, cluster_config, ray_options
from styler.cli.common import apply_config, apply_options, cli_words, common_options, device_option, echo, fail, \
    handle_errors, once, print_json, progress
from styler.config import AUTO, ApplyConfig, Engine, FolderConfig, OutputFormat, Temporal, VideoConfig
from styler.errors import StylerError

_APPLY = ApplyConfig()
_FOLDER = FolderConfig()
_VIDEO = VideoConfig()
_LISTED = 5  # file names a line lists before "and N more"


def shown(path: Path) -> str:
    """A folder as the user would type it: relative when it is below the current folder or
    beside it (``../photos_starry/``), absolute otherwise."""
    here, target = Path.cwd().resolve(), Path(path).resolve()
    for base, prefix in ((here, ""), (here.parent, "../")):
        if target == base and not prefix:
            return "./"
        if target.is_relative_to(base):
            return f"{prefix}{target.relative_to(base).as_posix()}/"
    return f"{target}/"


def _names(paths: list[Path]) -> str:
    more = f" and {len(paths) - _LISTED} more" if len(paths) > _LISTED else ""
    return ", ".join(str(p) for p in paths[:_LISTED]) + more


def unsupported_lines(unsupported: list[tuple[Path, str]]) -> list[str]:
    """One line per reason: how many files, which, and why (with what to install or do)."""
    by_reason: dict[str, list[Path]] = {}
    for path, reason in unsupported:
        by_reason.setdefault(reason, []).append(path)
    return [f"skipped {len(paths)} unsupported file{'s' if len(paths) > 1 else ''}: {_names(paths)} ({reason})"
            for reason, paths in by_reason.items()]


def _report_apply(summary: Any, skipped: list[tuple[Path, Path]], planned: Any, seconds_label: str, as_json: bool,
                  quiet: bool) -> None:
    for src, reason in summary.failed:
        reason = cli_words(reason)
        echo(f"failed: {src}: {reason}" if not reason.startswith(str(src)) else f"failed: {reason}", err=True)
    if not quiet:
        for line in unsupported_lines(planned.unsupported):
            echo(line, err=True)
    if as_json:
        print_json(_summary_json(summary, skipped, planned))
    elif not quiet:
        _print_apply_line(summary, len(skipped), planned.folders, seconds_label)


def _summary_json(summary: Any, skipped: list[tuple[Path, Path]], planned: Any) -> dict[str, Any]:
    def absolute(pairs: list[tuple[Path, str]]) -> list[dict[str, str]]:
        return [{"input": str(Path(s).absolute()), "reason": r} for s, r in pairs]

    return {"done": len(summary.done), "failed": len(summary.failed), "skipped": len(skipped),
            "seconds": round(summary.seconds, 3), "images_per_s": round(summary.images_per_s, 3),
            "outputs": [_pair(s, d) for s, d in sorted(summary.pairs)],
            "skipped_outputs": [_pair(s, d) for s, d in skipped],
            "output_folders": [str(Path(f).absolute()) for f in planned.folders],
            "unsupported": absolute(planned.unsupported), "failures": absolute(summary.failed)}


def _pair(src: Path, dst: Path) -> dict[str, str]:
    return {"input": str(Path(src).absolute()), "output": str(Path(dst).absolute())}


def _where(folders: list[Path]) -> str:
    return "; outputs in " + ", ".join(shown(f) for f in folders[:_LISTED]) + \
        (f" and {len(folders) - _LISTED} more folders" if len(folders) > _LISTED else "")


def _print_apply_line(summary: Any, skipped: int, folders: list[Path], seconds_label: str) -> None:
    if len(summary.done) == 1 and not summary.failed and not skipped:
        echo(f"wrote {summary.done[0]}")
        return
    existing = f", skipped {skipped} existing (--overwrite to redo)" if skipped else ""
    # A rate needs at least two images to mean anything.
    rate = f", {summary.images_per_s:.2f} images/s" if len(summary.done) > 1 else ""
    echo(f"done {len(summary.done)}, failed {len(summary.failed)}{existing}, {summary.seconds:.1f}s"
         f"{rate}{seconds_label}{_where(folders) if folders else ''}")


def _jpeg(value: str) -> str:
    value = value.lower()
    return "jpg" if value == "jpeg" else value


def _stroke_scale(ctx: click.Context, param: click.Parameter, value: str) -> float | str:
    """``auto`` or a number (the range is the library's to check, in one place)."""
    if value.lower() == AUTO:
        return AUTO
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"expected 'auto' or a number, got {value!r}", ctx, param) from None


def _video_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options of ``apply`` for stroke size, videos and animated images."""
    decorators = [
        click.option("--stroke-scale", default=_APPLY.stroke_scale, show_default=True, callback=_stroke_scale,
                     metavar="auto|S", help="Strokes S times larger: stylize at 1/S of the size, then restore "
                     "the photo's detail. auto: S grows with the image, so big photos look as painted as "
                     "1000 px ones."),
        click.option("--temporal", type=click.Choice([t.value for t in Temporal]), default=_VIDEO.temporal.value,
                     show_default=True, help="Videos: normalisation statistics shared by the clip's frames "
                     "(shared), a moving average reset at scene cuts (ema), or per frame (off: flickers)."),
        click.option("--codec", default=None, help="Video codec [default: libx264, libvpx-vp9 for .webm]."),
        click.option("--crf", type=int, default=_VIDEO.crf, show_default=True,
                     help="Video quality: lower is better and larger (x264: 18 looks lossless, 23 is ffmpeg's)."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _folder_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options of ``apply`` for folders and many files: finding, naming, batching, sharding."""
    decorators = [
        click.option("--max-size", type=int, default=None, help="Downscale so the longer side is at most this."),
        click.option("--recursive/--no-recursive", default=_FOLDER.recursive, show_default=True,
                     help="Search folders (and ** in patterns) recursively."),
        click.option("--overwrite/--skip-existing", default=_FOLDER.overwrite, show_default=True,
                     help="Redo every output that exists, or skip those made with the same style and "
                     "settings (resumes an interrupted run)."),
        click.option("--format", "fmt", type=click.Choice([*(f.value for f in OutputFormat), "jpeg"],
                                                          case_sensitive=False),
                     default=_FOLDER.format.value, show_default=True, callback=lambda ctx, param, value: _jpeg(value),
                     help="Output format; 'same' keeps each input's extension (HEIC: jpg)."),
        click.option("--quality", type=int, default=_FOLDER.quality, show_default=True,
                     help="JPEG/WebP quality 1..100."),
        click.option("--batch-pixels", type=int, default=_FOLDER.batch_pixels, show_default=True,
                     help="Images of one size stylized together, up to this many pixels (a larger one "
                     "goes alone)."),
        click.option("--batch-size", type=int, default=_VIDEO.batch_size, show_default=True,
                     help="Video frames stylized together."),
        click.option("--workers", type=int, default=_FOLDER.workers, show_default=True,
                     help="Decoding threads (and as many encoding threads)."),
        click.option("--shard", default=None, metavar="K/N",
                     help="Process only slice K of N (K from 0); under torchrun RANK/WORLD_SIZE are used."),
        click.option("--max-pixels", type=int, default=None,
                     help="Refuse images with more pixels than this [default: Pillow's limit, about 89 "
                     "million]."),
    ]
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def _apply_moving(stylizer: Any, pairs: list[tuple[Path, Path]], config: VideoConfig, quality: int, quiet: bool,
                  summary: Any, written: list[Path]) -> None:
    """Videos and animated images one after the other, each with a progress bar of frames."""
    from styler.inference.video import stylize_file

    start = time.perf_counter()
    for src, dst in pairs:
        with contextlib.ExitStack() as stack:
            bar: list[Callable[[float, str], None]] = []
            begun = time.perf_counter()

            def on_frame(done: int, total: int | None) -> None:
                if not bar:
                    bar.append(stack.enter_context(progress(total or 0, f"{src.name}", quiet)))
                bar[0](done, f"{done / max(time.perf_counter() - begun, 1e-9):.1f} frames/s")

            try:
                stylize_file(stylizer, src, dst, config, on_frame, quality, lambda e: _long_video(src, e, quiet))
                written.append(dst)
                summary.done.append(dst)
                summary.pairs.append((src, dst))
            except StylerError as exc:
                summary.failed.append((src, str(exc)))
    summary.seconds += time.perf_counter() - start


def _apply_still(stylizer: Any, pairs: list[tuple[Path, Path]], folder: FolderConfig, quiet: bool,
                 written: list[Path]) -> Any:
    """Still images through the pipeline under a progress bar that moves per stage of an image
    (one large photo too); ``written`` collects each output as it is written (for Ctrl-C)."""
    from styler.inference.pipeline import ApplySummary, apply_to_paths

    if not pairs:
        return ApplySummary()
    label = "stylizing" if len(pairs) > 1 else f"stylizing {pairs[0][0].name}"
    with progress(len(pairs), label, quiet, live_only=len(pairs) == 1) as advance:
        start, work = time.perf_counter(), [0.0]

        def on_image(src: Path, error: str | None) -> None:
            if error is None:
                written.append(src)  # the input: the pipeline reports by input

        def on_work(share: float) -> None:
            work[0] += share
            advance(round(work[0], 6), f"{len(written) / max(time.perf_counter() - start, 1e-9):.2f} images/s")

        return apply_to_paths(stylizer, pairs, folder, on_image, on_work)


class _LocalRun:
    """``--engine local``: the style loaded here; still images through this machine's pipeline,
    then each moving file with its own bar."""

    def __init__(self, style: str, weights_dir: Path | None, device: str, config: ApplyConfig, cluster: None) -> None:
        from styler.inference.stylizer import Stylizer

        self.stylizer = Stylizer.load(style, weights_dir=weights_dir, device=device, config=config)
        self.name = self.stylizer.name

    def settings(self, folder: FolderConfig) -> str:
        """What every output of the run records (reruns compare it)."""
        from styler.inference.pipeline import run_settings

        return run_settings(self.stylizer.settings(), folder)

    def __call__(self, pairs: list[tuple[Path, Path]], moving: list[tuple[Path, Path]], folder: FolderConfig,
                 video: VideoConfig, quiet: bool, written: list[Path]) -> Any:
        summary = _apply_still(self.stylizer, pairs, folder, quiet, written)
        _apply_moving(self.stylizer, moving, video, folder.quality, quiet, summary, written)
        return summary


_RUNS = {Engine.LOCAL: _LocalRun, Engine.RAY: RayRun}  # where the files are stylized


def _long_video(src: Path, estimate: Any, quiet: bool) -> None:
    """Say once, early, that a clip will take long, and which options shorten it."""
    if estimate.long and not quiet:
        options = " or ".join(f"--{name.replace('_', '-')} {value:g} ({fewer:.0f}x fewer pixels)"
                              for name, value, fewer in estimate.shorter())
        click.echo(f"note: {src.name}: {estimate.frames} frames at {estimate.frames_per_second:.1f} frames/s, "
                   f"about {estimate.duration}; {options} shortens it", err=True)


def _suggest_video_variant(style: str, weights_dir: Path | None) -> None:
    """A video with a still style that has a ``-video`` variant (trained with the temporal loss,
    about half the flicker): say so once, on stderr, since the output is still written."""
    from styler.io.weights import list_styles

    variant = f"{style}-video"
    if Path(style).is_file() or style.endswith("-video"):
        return
    if any(s.name == variant and s.error is None for s in list_styles(weights_dir)):
        echo(f"tip: {variant} is trained for video, with strokes that flicker less: --style {variant}", err=True)


def _nothing_found(planned: Any) -> None:
    """No input at all: one line, with why any files found were not usable."""
    reasons = sorted({reason for _, reason in planned.unsupported})
    found = f" (found {len(planned.unsupported)} it cannot read: {'; '.join(reasons)})" if reasons else ""
    fail(f"no images found in the given inputs{found}")


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--style", required=True, multiple=True, callback=lambda ctx, param, value: once(param, value),
              help="Style name (yours, else a bundled one), or a .safetensors path.")
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Output file (one image) or folder (a folder or several inputs, or a trailing slash).")
@apply_options
@_folder_options
@_video_options
@ray_options
@device_option
@common_options
@click.pass_context
@handle_errors
def apply(ctx: click.Context, inputs: tuple[Path, ...], style: str, output: str | None, **options: Any) -> None:
    """Stylize images, videos, folders or glob patterns in a single pass.

    \b
    Examples:
      styler apply photo.jpg --style starry           # writes photo_starry.jpg
      styler apply photo.jpg --style starry -o art.png
      styler apply photos/ --style starry -o out/     # mirrors the folder tree
      styler apply "photos/**/*.jpg" --style starry -o out/ --format webp
      styler apply huge.tif --style starry --tile 1024  # bounded memory
      styler apply photos/ --style starry -o out/ --shard 0/4
      styler apply photo.jpg --style mine.safetensors --strength 0.6
      styler apply big.jpg --style starry --stroke-scale 2  # larger strokes
      styler apply clip.mp4 --style starry        # clip_starry.mp4, audio kept
      styler apply loop.gif --style starry            # every frame, timing kept
    """
    o = options
    config = replace(apply_config(o["strength"], o["preserve_color"], o["tile"], o["max_tile_pixels"],
                                  o["tile_stats"], o["stats_size"], o["precision"], o["max_size"]),
                     stroke_scale=o["stroke_scale"])
    video = VideoConfig(temporal=Temporal(o["temporal"]), codec=o["codec"], crf=o["crf"], batch_size=o["batch_size"])
    folder = _folder_config(o)
    run = _RUNS[Engine(o["engine"])](style, o["weights_dir"], o["device"], config,
                                     cluster_config(o["engine"], o["ray_address"], o["ray_workers"],
                                                    o["gpus_per_worker"]))
    _run(ctx, run, inputs, output, folder, video, style, o)


def _folder_config(o: dict[str, Any]) -> FolderConfig:
    from styler.inference.planning import parse_shard, shard_from_env

    return FolderConfig(recursive=o["recursive"], overwrite=o["overwrite"], format=OutputFormat(o["fmt"]),
                        quality=o["quality"], batch_pixels=o["batch_pixels"], workers=o["workers"],
                        max_pixels=o["max_pixels"], shard=parse_shard(o["shard"]) if o["shard"] else shard_from_env())


def _run(ctx: click.Context, run: Any, inputs: tuple[Path, ...], output: str | None, folder: FolderConfig,
         video: VideoConfig, style: str, o: dict[str, Any]) -> None:
    """Plan, stylize still images then videos, report."""
    from styler.inference.planning import plan, split_existing, split_moving, take_shard

    planned = plan(inputs, output, run.name, folder)
    if not planned.pairs and not planned.failures:  # an empty shard of a non-empty run is fine (torchrun ranks)
        _nothing_found(planned)
    pairs, skipped = split_existing(take_shard(planned.pairs, folder.shard, inputs), folder.overwrite,
                                    run.settings(folder), planned.named)
    pairs, moving = split_moving(pairs)
    quiet, as_json = ctx.obj["quiet"], o["as_json"]
    if moving and not (quiet or as_json):
        _suggest_video_variant(style, o["weights_dir"])
    with _interrupted(len(pairs) + len(moving), planned.folders) as written:
        summary = run(pairs, moving, folder, video, quiet, written)
    summary.failed[:0] = planned.failures
    summary.skipped = [dst for _, dst in skipped]
    label = f" (shard {folder.shard[0]}/{folder.shard[1]})" if folder.shard else ""
    _report_apply(summary, skipped, planned, label, as_json, quiet)
    if summary.failed:
        sys.exit(1)


@contextlib.contextmanager
def _interrupted(total: int, folders: list[Path]) -> Iterator[list[Path]]:
    """Ctrl-C: one line that says how many of ``total`` files were written (the list the block
    fills) and where; rerunning skips them."""
    written: list[Path] = []
    try:
        yield written
    except KeyboardInterrupt:
        fail(f"interrupted: wrote {len(written)} of {total} files{_where(folders) if folders else ''}; the same "
             f"command again does the rest", 130)
