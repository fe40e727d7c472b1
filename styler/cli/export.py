"""``styler export``: a style's generator as ONNX or TorchScript."""

from __future__ import annotations

from pathlib import Path

import click

from styler.cli.common import common_options, handle_errors, print_json
from styler.config import ExportFormat


@click.command()
@click.argument("style")
@click.option("--format", "fmt", type=click.Choice([f.value for f in ExportFormat]), default="onnx",
              show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file [default: <style>.onnx or <style>.pt].")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset version.")
@common_options
@handle_errors
def export(style: str, fmt: str, output: Path | None, opset: int, weights_dir: Path | None, as_json: bool) -> None:
    """Export a style's generator to ONNX or TorchScript (dynamic batch, height and width).

    \b
    Input 'image' is (N, 3, H, W) RGB in [0, 1]; output 'stylized' has the same shape (clamp it).
    Examples:
      styler export starry                                  # writes starry.onnx
      styler export starry --format torchscript -o starry.pt
    """
    from styler.nn.generator import load_generator
    from styler.io.weights import resolve_weights
    from styler.inference.export import export_generator

    generator, info = load_generator(resolve_weights(style, weights_dir), "cpu")
    kind = ExportFormat(fmt)
    target = output or Path(f"{info.path.stem}.{'onnx' if kind is ExportFormat.ONNX else 'pt'}")
    path = export_generator(generator, target, kind, opset)
    if as_json:
        print_json({"output": str(path), "format": kind.value, "style": info.name})
    else:
        click.echo(f"wrote {path}")
