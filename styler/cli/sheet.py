"""``styler sheet``: one photo in every style, labelled."""

from __future__ import annotations

from pathlib import Path

import click

from styler.cli.common import apply_config, apply_options, common_options, device_option, handle_errors, print_json
from styler.config import default_weights_dir
from styler.errors import WeightsError


@click.command()
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("sheet.png"),
              show_default=True)
@click.option("--size", type=click.IntRange(16, 4096), default=320, show_default=True,
              help="Longer side of each stylized copy.")
@click.option("--columns", type=click.IntRange(1, 64), default=None, help="Images per row [default: about square].")
@apply_options
@device_option
@common_options
@handle_errors
def sheet(image: Path, output: Path, size: int, columns: int | None, strength: float, preserve_color: bool,
          tile: int | None, max_tile_pixels: int, tile_stats: str, stats_size: int, precision: str, device: str,
          weights_dir: Path | None, as_json: bool) -> None:
    """One photo in every style, labelled, to pick a style by eye.

    \b
    Examples:
      styler sheet photo.jpg -o sheet.png
      styler sheet photo.jpg --size 512 --columns 4 --weights-dir ~/styles
    """
    from styler.device import resolve_device
    from styler.io.images import open_image, save_image
    from styler.inference.sheet import render_sheet, stylize_all

    directory = weights_dir or default_weights_dir()
    config = apply_config(strength, preserve_color, tile, max_tile_pixels, tile_stats, stats_size, precision)
    entries, failures = stylize_all(open_image(image), directory, resolve_device(device), size, config)
    for name, reason in failures:
        click.echo(f"skipped style {name}: {reason}", err=True)
    if len(entries) == 1:
        raise WeightsError(f"no usable styles in {directory}; train one with 'styler train'")
    save_image(render_sheet(entries, columns), output)
    if as_json:
        print_json({"output": str(output.absolute()), "styles": [label for label, _ in entries[1:]],
                    "failures": [{"style": n, "reason": r} for n, r in failures]})
    else:
        click.echo(f"wrote {output} with {len(entries) - 1} style(s)")
