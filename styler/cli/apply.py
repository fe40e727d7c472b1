"""``styler apply``: stylize files, folders and patterns through the batch pipeline."""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import click

from styler.cli.apply_ray import RayRun, cluster_config, ray_options
from styler.cli.common import apply_config, apply_options, common_options, device_option, fail, handle_errors, \
    image_progress, once, print_json, progress
from styler.config import ApplyConfig, Engine, FolderConfig, OutputFormat, Temporal, VideoConfig
from styler.errors import StylerError

_APPLY = ApplyConfig()
_FOLDER = FolderConfig()
_VIDEO = VideoConfig()


def _report_apply(summary: Any, skipped: list[tuple[Path, Path]], seconds_label: str, as_json: bool,
                  quiet: bool) -> None:
    for src, reason in summary.failed:
        click.echo(f"failed: {src}: {reason}" if not reason.startswith(str(src)) else f"failed: {reason}", err=True)
    if as_json:
        print_json({"done": len(summary.done), "failed": len(summary.failed), "skipped": len(skipped),
                    "seconds": round(summary.seconds, 3), "images_per_s": round(summary.images_per_s, 3),
                    "outputs": [_pair(s, d) for s, d in sorted(summary.pairs)],
                    "skipped_outputs": [_pair(s, d) for s, d in skipped],
                    "failures": [{"input": str(Path(s).absolute()), "reason": r} for s, r in summary.failed]})
    elif not quiet:
        _print_apply_line(summary, len(skipped), seconds_label)


def _pair(src: Path, dst: Path) -> dict[str, str]:
    return {"input": str(Path(src).absolute()), "output": str(Path(dst).absolute())}


def _print_apply_line(summary: Any, skipped: int, seconds_label: str) -> None:
    if len(summary.done) == 1 and not summary.failed and not skipped:
        click.echo(f"wrote {summary.done[0]}")
        return
    existing = f", skipped {skipped} existing (--overwrite to redo)" if skipped else ""
    # A rate needs at least two images to mean anything.
    rate = f", {summary.images_per_s:.2f} images/s" if len(summary.done) > 1 else ""
    click.echo(f"done {len(summary.done)}, failed {len(summary.failed)}{existing}, {summary.seconds:.1f}s"
               f"{rate}{seconds_label}")


def _jpeg(value: str) -> str:
    value = value.lower()
    return "jpg" if value == "jpeg" else value


def _video_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options of ``apply`` for stroke size, videos and animated images."""
    decorators = [
        click.option("--stroke-scale", type=float, default=_APPLY.stroke_scale, show_default=True,
                     help="Strokes S times larger: stylize at 1/S of the size, then restore the photo's detail."),
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


def _apply_moving(stylizer: Any, pairs: list[tuple[Path, Path]], config: VideoConfig, quality: int, quiet: bool,
                  summary: Any) -> None:
    """Videos and animated images one after the other, each with a progress bar of frames."""
    from styler.inference.video import stylize_file

    start = time.perf_counter()
    for src, dst in pairs:
        with contextlib.ExitStack() as stack:
            bar: list[Callable[[int, str], None]] = []
            begun = time.perf_counter()

            def on_frame(done: int, total: int | None) -> None:
                if not bar:
                    bar.append(stack.enter_context(progress(total or 0, f"{src.name}", quiet)))
                bar[0](done, f"{done / max(time.perf_counter() - begun, 1e-9):.1f} frames/s")

            try:
                stylize_file(stylizer, src, dst, config, on_frame, quality, lambda e: _long_video(src, e, quiet))
                summary.done.append(dst)
                summary.pairs.append((src, dst))
            except StylerError as exc:
                summary.failed.append((src, str(exc)))
    summary.seconds += time.perf_counter() - start


class _LocalRun:
    """``--engine local``: the style loaded here; still images through this machine's pipeline,
    then each moving file with its own bar."""

    def __init__(self, style: str, weights_dir: Path | None, device: str, config: ApplyConfig, cluster: None) -> None:
        from styler.inference.stylizer import Stylizer

        self.stylizer = Stylizer.load(style, weights_dir=weights_dir, device=device, config=config)
        self.name = self.stylizer.name

    def __call__(self, pairs: list[tuple[Path, Path]], moving: list[tuple[Path, Path]], folder: FolderConfig,
                 video: VideoConfig, quiet: bool) -> Any:
        from styler.inference.pipeline import ApplySummary, apply_to_paths

        summary = ApplySummary()
        if pairs:
            with image_progress(len(pairs), f"stylizing with {self.name}", quiet or len(pairs) <= 1) as on_image:
                summary = apply_to_paths(self.stylizer, pairs, folder, on_image)
        _apply_moving(self.stylizer, moving, video, folder.quality, quiet, summary)
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
        click.echo(f"tip: {variant} is trained for video, with strokes that flicker less: --style {variant}",
                   err=True)


@click.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--style", required=True, multiple=True, callback=lambda ctx, param, value: once(param, value),
              help="Style name (yours, else a bundled one), or a .safetensors path.")
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Output file (one image) or folder (several inputs, or a trailing slash).")
@apply_options
@click.option("--max-size", type=int, default=None, help="Downscale so the longer side is at most this.")
@click.option("--recursive/--no-recursive", default=_FOLDER.recursive, show_default=True,
              help="Search folders (and ** in patterns) recursively.")
@click.option("--overwrite/--skip-existing", default=_FOLDER.overwrite, show_default=True,
              help="Redo outputs that already exist, or skip them (resumes an interrupted run).")
@click.option("--format", "fmt", type=click.Choice([*(f.value for f in OutputFormat), "jpeg"], case_sensitive=False),
              default=_FOLDER.format.value, show_default=True, callback=lambda ctx, param, value: _jpeg(value),
              help="Output format; 'same' keeps each input's extension.")
@click.option("--quality", type=int, default=_FOLDER.quality, show_default=True, help="JPEG/WebP quality 1..100.")
@click.option("--batch-size", type=int, default=_FOLDER.batch_size, show_default=True,
              help="Images of the same size stylized together.")
@click.option("--workers", type=int, default=_FOLDER.workers, show_default=True,
              help="Decoding threads (and as many encoding threads).")
@click.option("--shard", default=None, metavar="K/N",
              help="Process only slice K of N (K from 0); under torchrun RANK/WORLD_SIZE are used.")
@click.option("--max-pixels", type=int, default=None,
              help="Refuse images with more pixels than this [default: Pillow's limit, about 89 million].")
@_video_options
@ray_options
@device_option
@common_options
@click.pass_context
@handle_errors
def apply(ctx: click.Context, inputs: tuple[Path, ...], style: str, output: str | None, strength: float,
          preserve_color: bool, tile: int | None, max_tile_pixels: int, tile_stats: str, stats_size: int,
          precision: str, max_size: int | None,
          recursive: bool, overwrite: bool, fmt: str, quality: int, batch_size: int, workers: int,
          shard: str | None, max_pixels: int | None, stroke_scale: float, temporal: str, codec: str | None, crf: int,
          engine: str, ray_address: str | None, ray_workers: int | None, gpus_per_worker: float | None,
          device: str, weights_dir: Path | None, as_json: bool) -> None:
    """Stylize images, videos, folders or glob patterns in a single pass.

    \b
    Examples:
      styler apply photo.jpg --style starry                 # writes photo_starry.jpg
      styler apply photo.jpg --style starry -o art.png
      styler apply photos/ --style starry -o out/           # mirrors the folder tree
      styler apply "photos/**/*.jpg" --style starry -o out/ --format webp --quality 90
      styler apply huge.tif --style starry --tile 1024      # bounded memory, same result
      styler apply huge.tif --style starry --tile 1024 --tile-stats downscaled  # faster, approximate
      styler apply photos/ --style starry -o out/ --shard 0/4
      styler apply photo.jpg --style weights/mine.safetensors --strength 0.6 --preserve-color
      styler apply big.jpg --style starry --stroke-scale 2       # strokes twice as large
      styler apply clip.mp4 --style starry                      # clip_starry.mp4, audio kept
      styler apply clip.mov --style starry -o out.mp4 --temporal ema --crf 20
      styler apply loop.gif --style starry                      # every frame, timing kept
    """
    from styler.inference.planning import parse_shard, plan_outputs, shard_from_env, split_existing, split_moving, \
        take_shard

    config = replace(apply_config(strength, preserve_color, tile, max_tile_pixels, tile_stats, stats_size, precision,
                                  max_size), stroke_scale=stroke_scale)
    video = VideoConfig(temporal=Temporal(temporal), codec=codec, crf=crf, batch_size=batch_size)
    folder = FolderConfig(recursive=recursive, overwrite=overwrite, format=OutputFormat(fmt), quality=quality,
                          batch_size=batch_size, workers=workers, max_pixels=max_pixels,
                          shard=parse_shard(shard) if shard else shard_from_env())
    run = _RUNS[Engine(engine)](style, weights_dir, device, config,
                                cluster_config(engine, ray_address, ray_workers, gpus_per_worker))
    planned, failed = plan_outputs(inputs, output, run.name, folder)
    pairs, skipped = split_existing(take_shard(planned, folder.shard, inputs), folder.overwrite)
    pairs, moving = split_moving(pairs)
    if moving and not (ctx.obj["quiet"] or as_json):
        _suggest_video_variant(style, weights_dir)
    summary = run(pairs, moving, folder, video, ctx.obj["quiet"])
    summary.failed[:0] = failed
    summary.skipped = [dst for _, dst in skipped]
    if not planned and not failed:  # an empty shard of a non-empty run is fine (torchrun ranks)
        fail("no images found in the given inputs")
    label = f" (shard {folder.shard[0]}/{folder.shard[1]})" if folder.shard else ""
    _report_apply(summary, skipped, label, as_json, ctx.obj["quiet"])
    if summary.failed:
        sys.exit(1)
