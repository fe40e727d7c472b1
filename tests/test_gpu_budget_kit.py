"""scripts/gpu_budget_kit.py: a VGG-16 file small enough to travel to a lent GPU, which styler
reads as the same loss network up to float16 rounding, and the photos beside it."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from styler.config import Features, Preprocess
from styler.io.files import file_sha256
from styler.nn.vgg import build_feature_extractor
from tests.test_vgg_files import random_convs, write_onnx

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def kit_module():
    spec = importlib.util.spec_from_file_location("gpu_budget_kit", ROOT / "scripts" / "gpu_budget_kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kit_holds_the_same_loss_network_in_half_the_bytes_and_every_photo(tmp_path, photo_dir):
    onnx = write_onnx(tmp_path / "vgg16.onnx", random_convs(div=1), nhwc=True)
    kit = tmp_path / "kit"
    kit_module().main(["--vgg", str(onnx), "--photos", str(photo_dir), "--out", str(kit)])

    weights = kit / "vgg16_fp16.pth"
    state = torch.load(weights, weights_only=True)
    assert all(v.dtype == torch.float16 and k.startswith("features.") for k, v in state.items())
    assert weights.stat().st_size < onnx.stat().st_size * 0.55
    x = torch.rand(1, 3, 48, 48)
    original = build_feature_extractor(Features.VGG16, LAYERS, weights_file=onnx)(x)
    packed = build_feature_extractor(Features.VGG16, LAYERS, weights_file=weights, preprocess=Preprocess.CAFFE)(x)
    for name in LAYERS:
        error = (packed[name] - original[name]).abs().max() / original[name].abs().max()
        assert 0 < error < 5e-3, name  # float16 rounding, nothing more

    source = (kit / "SOURCE.txt").read_text()
    assert file_sha256(weights) in source and file_sha256(onnx) in source and "caffe" in source
    copied = sorted(p.relative_to(kit / "photos") for p in (kit / "photos").rglob("*") if p.is_file())
    assert copied == sorted(p.relative_to(photo_dir) for p in photo_dir.rglob("*") if p.is_file())


def test_gpu_budget_script_trains_both_runs_into_what_time_to_quality_reads(tmp_path, photo_dir, style_image):
    """scripts/gpu_budget.sh with DEVICE=cpu (its dry run): a head-start and a from-scratch run
    within the budget, their generators and --json summaries where time_to_quality.py looks,
    and the summary naming the device and each run's wall time."""
    onnx = write_onnx(tmp_path / "vgg16.onnx", random_convs(div=1), nhwc=True)
    kit = tmp_path / "kit"
    kit_module().main(["--vgg", str(onnx), "--photos", str(photo_dir), "--out", str(kit)])
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "KIT": str(kit), "DEVICE": "cpu", "PYTHON": sys.executable,
           "RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "2"}
    done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_budget.sh"), str(style_image), "20"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for name in ("head_start_20s", "scratch_20s"):
        assert (out / "w" / f"{name}.safetensors").is_file()
        summary = json.loads((out / "runs" / f"{name}.json").read_text())
        assert summary["steps"] >= 1 and summary["budget_seconds"] == 20
    assert summary["init_from"] == "none"
    text = (out / "summary.txt").read_text()
    assert "device cpu" in text and "head_start_20s:" in text and "scratch_20s:" in text
