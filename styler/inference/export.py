"""Export a style's generator to ONNX or TorchScript with dynamic height and width.

Tracing records Python integers as constants, so :class:`Generator`'s own size arithmetic
(extending the photo by its border and to a multiple of the stride) would freeze at the example
size. :class:`Exportable` is compiled with ``torch.jit.script`` instead, which keeps that
arithmetic (the generator's own :func:`extend_border`) symbolic in both formats, so an exported
model gives what ``styler apply`` gives, borders included. The legacy TorchScript-based ONNX
exporter is used because the dynamo exporter needs onnxscript.
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path

import torch
from torch import nn

from styler.config import ExportFormat
from styler.errors import ConfigError, StylerError
from styler.io.files import atomic_path
from styler.nn import Generator
from styler.nn.generator import BORDER, extend_border, finish_output


class ExportError(StylerError):
    """The model could not be exported (missing exporter package, unsupported operation)."""


class Exportable(nn.Module):
    """The generator's forward in a form ``torch.jit.script`` compiles (no config object)."""

    def __init__(self, generator: Generator, margin: int = BORDER) -> None:
        super().__init__()
        self.body, self.head = generator.body, generator.head
        self.stride = int(generator.config.stride)
        self.input_skip = bool(generator.config.input_skip)
        self.margin = int(margin)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w, m = x.shape[-2], x.shape[-1], self.margin
        padded = extend_border(x, self.stride, m)
        y = finish_output(self.head(self.body(padded * 2.0 - 1.0)), padded, self.input_skip)
        return y[:, :, m:m + h, m:m + w]


def cpu_copy(generator: Generator) -> Generator:
    """A float32 copy of ``generator`` on the CPU, built from its state: the caller's model stays
    on its device, in its dtype, in its mode."""
    copy = Generator(generator.config)
    copy.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in generator.state_dict().items()})
    return copy.eval()


def export_generator(generator: Generator, path: Path, fmt: ExportFormat, opset: int = 17) -> Path:
    """Write ``generator`` to ``path`` (atomically): input ``image`` (N, 3, H, W) in [0, 1],
    output ``stylized`` of the same shape (not clamped), N, H and W dynamic. ``generator`` itself
    is left as it is (exported from a CPU copy)."""
    fmt = ExportFormat(fmt)
    path = Path(path)
    if not 7 <= opset <= 21:
        raise ConfigError(f"opset must be 7..21, got {opset}")
    module = Exportable(cpu_copy(generator)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream; it still works here
        scripted = torch.jit.script(module)
    started = False  # failing before the temp file exists means the path cannot be written
    try:
        with atomic_path(path) as tmp:
            started = True
            if fmt is ExportFormat.TORCHSCRIPT:
                scripted.save(tmp)
            else:
                _export_onnx(scripted, tmp, opset)
    except StylerError:
        raise
    except Exception as exc:
        if not started:
            raise ExportError(f"{path}: cannot write ({getattr(exc, 'strerror', None) or exc})") from exc
        # The exporters raise many kinds of errors (unsupported operator, disk full, ...).
        raise ExportError(f"exporting to {path} failed: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    return path


def _export_onnx(scripted: torch.jit.ScriptModule, target: str, opset: int) -> None:
    try:
        importlib.import_module("onnx")  # the exporter needs it; fail with a clear message if absent
    except ImportError as exc:
        raise ExportError("ONNX export needs the onnx package: pip install 'styler[onnx]'") from exc
    example = torch.rand(1, 3, 64, 64)
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(scripted, (example,), target, input_names=["image"], output_names=["stylized"],
                          dynamic_axes={"image": axes, "stylized": axes}, opset_version=opset, dynamo=False)
