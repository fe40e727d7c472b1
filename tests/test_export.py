"""`styler export`: ONNX (run with onnxruntime) and TorchScript, dynamic height and width."""

import warnings

import pytest
import torch
from click.testing import CliRunner

from styler.cli import main
from styler.config import GeneratorConfig
from styler.io.weights import save_generator
from styler.inference.export import export_generator
from styler.nn import Generator
from styler.nn.fast import FastGenerator

SIZES = [(48, 64), (37, 53), (12, 7)]  # not a multiple of the stride; narrower than a pad


@pytest.fixture(params=[{}, {"input_skip": True}, {"num_downsamples": 3}], ids=["tanh-output", "input-skip", "stride-8"])
def weights(tmp_path, request):
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(base_channels=4, num_residual=1, **request.param)).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_generator(tmp_path / "w" / "demo.safetensors", g, {"style_name": "demo"})
    return tmp_path / "w", g


def applied(g: Generator, x: torch.Tensor) -> torch.Tensor:
    """What `styler apply` computes: the generator on the photo extended by its border."""
    return FastGenerator.from_generator(g)(x)


def export(tmp_path, weights_dir, fmt, name):
    target = tmp_path / name
    result = CliRunner().invoke(main, ["export", "demo", "--format", fmt, "-o", str(target),
                                       "--weights-dir", str(weights_dir)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"wrote {target}" in result.stdout
    return target


def test_onnx_matches_torch_at_three_sizes(tmp_path, weights):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    weights_dir, g = weights
    session = ort.InferenceSession(str(export(tmp_path, weights_dir, "onnx", "demo.onnx")),
                                   providers=["CPUExecutionProvider"])
    for h, w in SIZES:
        x = torch.rand(2, 3, h, w)
        (y,) = session.run(["stylized"], {"image": x.numpy()})
        with torch.no_grad():
            assert y.shape == (2, 3, h, w) and (torch.from_numpy(y) - applied(g, x)).abs().max() < 1e-3


def test_torchscript_matches_torch_at_three_sizes(tmp_path, weights):
    weights_dir, g = weights
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated upstream
        module = torch.jit.load(str(export(tmp_path, weights_dir, "torchscript", "demo.pt")))
    for h, w in SIZES:
        x = torch.rand(1, 3, h, w)
        with torch.no_grad():
            assert (module(x) - applied(g, x)).abs().max() < 1e-5


def test_export_unknown_style_lists_available(tmp_path, weights):
    result = CliRunner().invoke(main, ["export", "nope", "--weights-dir", str(weights[0])])
    assert result.exit_code == 1 and "available: demo" in result.stderr


def test_export_default_name(tmp_path, weights, monkeypatch):
    pytest.importorskip("onnx")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["export", "demo", "--weights-dir", str(weights[0])])
    assert result.exit_code == 0 and (tmp_path / "demo.onnx").stat().st_size > 1000


def test_export_leaves_the_callers_model_where_it_was(tmp_path):
    """Exporting works from a CPU copy: the model keeps its dtype and training mode (and device)."""
    g = Generator(GeneratorConfig(base_channels=4, num_residual=1)).to(torch.float64).train()
    export_generator(g, tmp_path / "g.pt", "torchscript")
    assert next(g.parameters()).dtype == torch.float64 and g.training
