"""``styler export``: a style's generator as ONNX or TorchScript."""

from __future__ import annotations

import os
from pathlib import Path

import click

from styler.cli.common import common_options, handle_errors, print_json
from styler.config import ExportFormat
from styler.errors import StylerError


@click.command()
@click.argument("style")
@click.option("--format", "fmt", type=click.Choice([f.value for f in ExportFormat]), default="onnx",
              show_default=True)
@click.option("-o", "--output", type=click.Path(), default=None,
              help="Output file, or a folder (existing, or with a trailing slash) [default: <style>.onnx or "
                   "<style>.pt].")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset version.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@common_options
@handle_errors
def export(style: str, fmt: str, output: str | None, opset: int, overwrite: bool, weights_dir: Path | None,
           as_json: bool) -> None:
    """Export a style's generator to ONNX or TorchScript.

    Batch, height and width are dynamic. Input 'image' is (N, 3, H, W) RGB in [0, 1]; output
    'stylized' has the same shape (clamp it).

    \b
    Examples:
      styler export starry                  # writes starry.onnx
      styler export starry --format torchscript -o starry.pt
      styler export starry -o models/       # writes models/starry.onnx
    """
    from styler.nn.generator import load_generator
    from styler.io.weights import resolve_weights
    from styler.inference.export import export_generator

    generator, info = load_generator(resolve_weights(style, weights_dir), "cpu")
    kind = ExportFormat(fmt)
    target = _target(output, Path(f"{info.path.stem}.{'onnx' if kind is ExportFormat.ONNX else 'pt'}"))
    if target.exists() and not overwrite:
        raise StylerError(f"{target} already exists; pass --overwrite to replace it")
    path = export_generator(generator, target, kind, opset)
    if as_json:
        print_json({"output": str(path.resolve()), "format": kind.value, "style": info.name})
    else:
        click.echo(f"wrote {path}")


def _target(output: str | None, name: Path) -> Path:
    """``-o`` as a file, or as a folder to hold ``name`` (existing, or written with a trailing slash)."""
    if output is None:
        return name
    if output.endswith(("/", os.sep)) or Path(output).is_dir():
        return Path(output) / name
    return Path(output)
