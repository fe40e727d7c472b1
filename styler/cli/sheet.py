"""``styler sheet``: one photo in every style, labelled."""

from __future__ import annotations

from pathlib import Path

import click

from styler.cli.common import apply_config, apply_options, common_options, device_option, handle_errors, print_json
from styler.config import default_weights_dir
from styler.errors import StylerError, WeightsError


def _names(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(dict.fromkeys(name.strip() for name in value.split(",") if name.strip()))
    if not names:
        raise click.BadParameter("give one or more style names, separated by commas", param=param)
    return names


@click.command(short_help="Render one image in every style, each labelled with its name.")
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("sheet.png"),
              show_default=True)
@click.option("--size", type=click.IntRange(16, 4096), default=320, show_default=True,
              help="Longer side of each stylized copy.")
@click.option("--columns", type=click.IntRange(1, 64), default=None, help="Images per row [default: about square].")
@click.option("--styles", "names", default=None, metavar="NAME,...", callback=_names,
              help="Only these styles (names or .safetensors files), in this order [default: every style].")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@apply_options
@device_option
@common_options
@handle_errors
def sheet(image: Path, output: Path, size: int, columns: int | None, names: tuple[str, ...] | None, overwrite: bool,
          strength: float, preserve_color: bool, tile: int | None, max_tile_pixels: int, tile_stats: str,
          stats_size: int, precision: str, device: str, weights_dir: Path | None, as_json: bool) -> None:
    """Render one image in every style (yours, ./weights, the bundled ones) or in those of
    --styles, labelled, to pick one by eye.

    \b
    Examples:
      styler sheet photo.jpg -o sheet.png
      styler sheet photo.jpg --styles starry,matisse -o two.png
      styler sheet photo.jpg --size 512 --columns 4 --weights-dir ~/styles
    """
    from styler.device import resolve_device
    from styler.io.images import open_image, save_image
    from styler.inference.sheet import render_sheet, stylize_all

    if output.exists() and not overwrite:
        raise StylerError(f"{output} already exists; pass --overwrite to replace it")
    directory = weights_dir or default_weights_dir()
    config = apply_config(strength, preserve_color, tile, max_tile_pixels, tile_stats, stats_size, precision)
    entries, failures = stylize_all(open_image(image), directory, resolve_device(device), size, config, names)
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
