"""pyproject.toml states what the code really needs."""

import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")

ROOT = Path(__file__).resolve().parent.parent


def requirements():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {req.split(">")[0].split("<")[0].split("=")[0].strip(): req for req in data["project"]["dependencies"]}


def test_torch_floor_is_what_the_code_needs_and_nothing_caps_a_patch_release():
    import torch

    reqs = requirements()
    # torch.OutOfMemoryError, onnx.export(dynamo=...) and amp.GradScaler(device) arrived in 2.5.
    assert reqs["torch"] == "torch>=2.5" and reqs["torchvision"] == "torchvision>=0.20"
    assert all("<" not in req for req in reqs.values()), reqs
    assert hasattr(torch, "OutOfMemoryError")
