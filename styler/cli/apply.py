"""``styler apply``: stylize files, folders and patterns through the batch pipeline."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from styler.cli.common import apply_config, apply_options, common_options, device_option, fail, handle_errors, \
    once, print_json, progress
from styler.config import FolderConfig, OutputFormat

_FOLDER = FolderConfig()


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
@device_option
@common_options
@click.pass_context
@handle_errors
def apply(ctx: click.Context, inputs: tuple[Path, ...], style: str, output: str | None, strength: float,
          preserve_color: bool, tile: int | None, max_tile_pixels: int, tile_stats: str, stats_size: int,
          precision: str, max_size: int | None,
          recursive: bool, overwrite: bool, fmt: str, quality: int, batch_size: int, workers: int,
          shard: str | None, max_pixels: int | None, device: str, weights_dir: Path | None, as_json: bool) -> None:
    """Stylize images, folders or glob patterns in a single pass.

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
    """
    from styler.inference.stylizer import Stylizer
    from styler.inference.pipeline import ApplySummary, apply_to_paths
    from styler.inference.planning import parse_shard, plan_outputs, shard_from_env, split_existing, take_shard

    config = apply_config(strength, preserve_color, tile, max_tile_pixels, tile_stats, stats_size, precision,
                           max_size)
    folder = FolderConfig(recursive=recursive, overwrite=overwrite, format=OutputFormat(fmt), quality=quality,
                          batch_size=batch_size, workers=workers, max_pixels=max_pixels,
                          shard=parse_shard(shard) if shard else shard_from_env())
    stylizer = Stylizer.load(style, weights_dir=weights_dir, device=device, config=config)
    planned, failed = plan_outputs(inputs, output, stylizer.name, folder)
    pairs, skipped = split_existing(take_shard(planned, folder.shard, inputs), folder.overwrite)
    quiet = ctx.obj["quiet"] or len(pairs) <= 1
    summary = ApplySummary()
    if pairs:
        with progress(len(pairs), f"stylizing with {stylizer.name}", quiet) as advance:
            start, count = time.perf_counter(), iter(range(1, len(pairs) + 1))

            def on_image(src: Path, error: str | None) -> None:
                n = next(count)
                advance(n, f"{n / max(time.perf_counter() - start, 1e-9):.2f} images/s")

            summary = apply_to_paths(stylizer, pairs, folder, on_image)
    summary.failed[:0] = failed
    summary.skipped = [dst for _, dst in skipped]
    if not planned and not failed:  # an empty shard of a non-empty run is fine (torchrun ranks)
        fail("no images found in the given inputs")
    label = f" (shard {folder.shard[0]}/{folder.shard[1]})" if folder.shard else ""
    _report_apply(summary, skipped, label, as_json, ctx.obj["quiet"])
    if summary.failed:
        sys.exit(1)
