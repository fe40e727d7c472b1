"""Benchmarks run at tiny sizes (no timing is asserted here; the benchmark scripts report
timings); FastGenerator's equivalence to the plain generator is tested in test_fast.py."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch import nn

from benchmarks.transformer_net import TransformerNet
from styler.config import GeneratorConfig
from styler.nn.fast import FastGenerator, FastInstanceNorm
from styler.nn.generator import Border, Generator
from tests.test_fast import FAST_ATOL


def test_transformer_net_matches_johnson_parameter_count():
    net = TransformerNet()
    assert sum(p.numel() for p in net.parameters()) == TransformerNet.PARAMETERS == 1_679_235
    out = net(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_bench_apply_runs_at_a_tiny_size(capsys):
    from benchmarks import bench_apply

    rows = bench_apply.main(["--sizes", "32", "40x24", "--repeats", "1", "--threads", "1", "--json"])
    lines = _json_lines(capsys.readouterr().out)
    assert [r["size"] for r in lines] == [32, "40x24"] and len(rows) == 2
    for row in lines:
        for key in ("size", "styler_ms", "baseline_ms", "speedup", "styler_gflop", "baseline_gflop",
                    "peak_gflops", "styler_peak_mb", "loadavg"):
            assert key in row, key
        assert row["speedup"] == pytest.approx(row["baseline_ms"] / row["styler_ms"], rel=0.02)
        # styler runs on the photo extended by its border (styler.nn.generator.Border), which at
        # these tiny sizes is several times the photo; per pixel it runs, it is >10x cheaper
        h, w = (row["size"], row["size"]) if isinstance(row["size"], int) else map(int, row["size"].split("x")[::-1])
        border = Border(h, w, GeneratorConfig().stride)
        extended = border.padded_height * border.padded_width / (h * w)
        assert row["baseline_gflop"] > 10 * row["styler_gflop"] / extended > 0
        assert row["styler_max_abs_diff_vs_fp32"] <= FAST_ATOL  # the fast path's own tolerance


def test_bench_apply_curve_measures_one_size_whole_or_in_stripes(capsys):
    """--curve runs each measurement in a fresh process through this entry point."""
    from benchmarks import bench_apply

    args = ["--tile", "64", "--repeats", "1", "--threads", "1", "--base-channels", "4"]
    whole = bench_apply.main(["--curve-child", "whole", "96x72", *args])[0]
    stripes = bench_apply.main(["--curve-child", "stripes", "96x72", *args])[0]
    assert [line["mode"] for line in _json_lines(capsys.readouterr().out)] == ["whole", "stripes"]
    for row in (whole, stripes):
        assert (row["width"], row["height"]) == (96, 72) and row["ms_per_megapixel"] > 0
        assert row["peak_rss_mib"] > 0 and "loadavg" in row


def test_bench_apply_base_channels_sets_the_generators_width(capsys):
    """Doubling the width costs about 4x the FLOPs (most convolutions are width x width)."""
    from benchmarks import bench_apply

    args = ["--sizes", "32", "--repeats", "1", "--threads", "1", "--json", "--no-plain", "--no-baseline"]
    bench_apply.main([*args, "--base-channels", "8"])
    bench_apply.main([*args, "--base-channels", "16"])
    narrow, wide = _json_lines(capsys.readouterr().out)
    assert 3.0 < wide["styler_gflop"] / narrow["styler_gflop"] < 4.2


def test_bench_apply_downsamples_moves_the_blocks_at_about_the_same_flops(capsys):
    """Blocks at 1/4 with half the channels cost what blocks at 1/8 do; the encoder and decoder
    lose a level, so the whole network costs a little less."""
    from benchmarks import bench_apply

    args = ["--sizes", "64", "--repeats", "1", "--threads", "1", "--json", "--no-plain", "--no-baseline"]
    bench_apply.main([*args, "--downsamples", "3"])
    bench_apply.main([*args, "--downsamples", "2"])
    coarse, fine = _json_lines(capsys.readouterr().out)
    assert 0.7 < fine["styler_gflop"] / coarse["styler_gflop"] < 1.0


def conv_gflop_from_shapes(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    """2 x multiply-adds of every convolution, from its weight and output shapes (on the meta
    device), and of the fast instance norms' sums of squares (one multiply-add per input value,
    an einsum the counter sees): an independent count to check the benchmark's flop counter against."""
    macs = []

    def count(module, args, out):
        if isinstance(module, FastInstanceNorm):
            macs.append(args[0].numel())
        else:
            macs.append(out.numel() * module.weight[0].numel())  # each output sums in/groups x kh x kw

    meta = copy.deepcopy(model).to("meta")
    hooks = [m.register_forward_hook(count) for m in meta.modules()
             if isinstance(m, (torch.nn.Conv2d, FastInstanceNorm))]
    with torch.no_grad():
        meta(torch.empty(shape, device="meta"))
    for hook in hooks:
        hook.remove()
    return 2 * sum(macs) / 1e9


@pytest.mark.parametrize("name", ["transformer_net", "styler_fast", "styler_plain"])
def test_bench_apply_flops_equal_multiply_adds_counted_from_layer_shapes(name):
    from benchmarks.bench_apply import count_gflop

    model = {"transformer_net": TransformerNet, "styler_fast": lambda: FastGenerator.from_generator(Generator()),
             "styler_plain": Generator}[name]()
    expected = conv_gflop_from_shapes(model, (1, 3, 1024, 1024))
    assert expected > 1 and count_gflop(model, (1, 3, 1024, 1024)) == pytest.approx(expected, rel=1e-3)


def test_bench_apply_bf16_stays_close_to_fp32(capsys):
    from benchmarks import bench_apply

    bench_apply.main(["--sizes", "32", "--repeats", "1", "--threads", "1", "--precision", "bf16",
                      "--no-plain", "--no-baseline", "--json"])
    (row,) = _json_lines(capsys.readouterr().out)
    assert row["speedup"] is None
    assert row["styler_psnr_vs_fp32_db"] >= 35.0  # the bar for a bf16 path


def test_bench_apply_times_fp32_and_bf16_side_by_side_and_names_the_bf16_flags(capsys):
    from benchmarks import bench_apply

    (row,) = bench_apply.main(["--sizes", "32", "--repeats", "1", "--threads", "1", "--precision", "both",
                               "--no-plain", "--no-baseline"])
    out = capsys.readouterr().out
    assert "avx512_bf16" in out and "amx_bf16" in out and "native bf16" in out
    assert row["styler_psnr_vs_fp32_db"] > 100 and row["styler_bf16_psnr_vs_fp32_db"] >= 35.0
    assert row["bf16_speedup"] > 0 and "PSNR" in out


def test_bench_apply_rejects_a_bad_size():
    from benchmarks import bench_apply

    with pytest.raises(SystemExit):
        bench_apply.main(["--sizes", "big"])


def test_bench_train_times_before_after_and_examples_at_a_tiny_size(photo_dir, style_image, capsys):
    from benchmarks import bench_train

    (row,) = bench_train.main(["--sizes", "32", "--steps", "1", "--batch-size", "1", "--threads", "1",
                               "--content-dir", str(photo_dir), "--style", str(style_image), "--style-size", "64",
                               "--d-every", "2", "--phone-photos", "1", "--phone-size", "96", "64", "--layouts", "--json"])
    assert _json_lines(capsys.readouterr().out)[0]["size"] == 32
    for arm in bench_train.ARMS:
        assert row[f"{arm}_steps_per_s"] > 0 and row[f"{arm}_cpu_ms_median"] > 0
    assert row["steps_per_s"] == row["after_steps_per_s"] and row["speedup"] > 0 and row["speedup_vs_examples"] > 0
    # The step's arithmetic (forward and backward, convolutions and Gram matrices) against the
    # machine's matmul ceiling.
    assert row["step_gflop"] > 0 and row["peak_gflops"] > 0 and row["fraction_of_peak"] > 0
    assert row["peak_conv_gflops"] > 0 and row["winograd_layers"] >= 0
    assert row["winograd_products"] in ("oneDNN", "MKL")
    assert row["precision"] in ("float32", "bfloat16")
    assert ("peak_bf16_gflops" in row) == (row["precision"] == "bfloat16")
    for prefix in ("", "before_"):
        assert sum(row[f"{prefix}{p}_share"] for p in bench_train.PHASES) == pytest.approx(1.0, abs=0.01)
    assert [r["photos"] for r in row["loaders"]] == ["content_dir", "phone"]
    assert all(r["reduced_cached_images_per_s"] > 0 for r in row["loaders"])
    parts = ("features_content", "features_output", "discriminator_update", "discriminator_adversarial", "generator")
    assert all(row["layouts"][f"{p}_{layout}_ms"] > 0 for p in parts for layout in ("contiguous", "channels_last"))


def test_bench_train_before_arm_runs_the_old_step(photo_dir, style_image, tmp_path, monkeypatch):
    """The before arm's Trainer runs the whole loss network for the content targets, contiguous,
    direct convolutions only, copying ReLUs, autograd's Gram backward, in fp32, with the discriminator every
    step; the after arm's is what styler train builds, in the precision asked for."""
    from benchmarks import bench_train
    from benchmarks.train_baselines import FullTrunk
    from styler.nn.winograd import WinogradConv2d
    from styler.training import trainer as trainer_module
    from styler.training.losses import GramLayerLoss

    monkeypatch.setattr(trainer_module, "winograd_pays", lambda: True)  # as on a CPU where it pays
    args = bench_train.parse_args(["--content-dir", str(photo_dir), "--style", str(style_image), "--style-size", "64",
                                   "--batch-size", "1", "--d-every", "3", "--no-examples", "--precision", "bf16"])
    arms, after, before = bench_train.build_arms(32, args, torch.device("cpu"), tmp_path)
    assert after.amp_dtype == torch.bfloat16 and before.amp_dtype == torch.float32
    assert set(arms) == {"after", "before"}
    assert isinstance(before.loss.extractor, FullTrunk) and before.config.d_every == 1
    assert before.extractor.net[0].weight.is_contiguous()
    assert after.loss.extractor is after.extractor and after.config.d_every == 3
    assert after.extractor.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert any(isinstance(m, WinogradConv2d) for m in after.extractor.net)
    assert not any(isinstance(m, WinogradConv2d) for m in before.extractor.net)
    assert not any(isinstance(m, GramLayerLoss) for m in before.loss.style.layers.values())
    assert not any(isinstance(m, nn.ReLU) and m.inplace for m in before.extractor.net)
    assert any(isinstance(m, nn.ReLU) and m.inplace for m in after.extractor.net)


def test_bench_train_steps_advance_the_count_so_the_discriminator_cadence_applies(photo_dir, style_image, tmp_path):
    """Each timed step advances the Trainer's step count as ``Trainer.run`` does, so ``--d-every 2``
    updates the discriminator on every other step of the after arm, not on every one."""
    from benchmarks import bench_train

    args = bench_train.parse_args(["--content-dir", str(photo_dir), "--style", str(style_image), "--style-size", "64",
                                   "--batch-size", "1", "--d-every", "2", "--no-examples", "--precision", "fp32"])
    arms, after, before = bench_train.build_arms(32, args, torch.device("cpu"), tmp_path)
    for name, trainer in (("after", after), ("before", before)):
        step, batches = arms[name]
        for _ in range(4):
            step(next(batches)[0])
        assert trainer.step == 4
    updates = {name: max(int(s["step"]) for s in t.opt_d.state.values()) for name, t in (("after", after), ("before", before))}
    assert updates == {"after": 2, "before": 4}


def test_before_arm_gram_is_autograds_with_the_same_targets_and_values():
    """``use_autograd_gram`` (the before arm's Gram style loss): same targets, same loss and
    gradient as styler's, only computed the way autograd derives it."""
    from benchmarks.train_baselines import AutogradGramLayerLoss, use_autograd_gram
    from styler.training.losses import GramLoss

    torch.manual_seed(0)
    loss = GramLoss({"a": torch.rand(1, 8, 6, 6), "b": torch.rand(1, 16, 3, 3)})
    feats = {"a": torch.rand(2, 8, 6, 6, requires_grad=True), "b": torch.rand(2, 16, 3, 3, requires_grad=True)}
    ours = torch.autograd.grad(loss(feats), list(feats.values()))
    use_autograd_gram(loss)
    assert all(type(m) is AutogradGramLayerLoss for m in loss.layers.values())
    theirs = torch.autograd.grad(loss(feats), list(feats.values()))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-8)


def test_timed_breakdown_runs_the_trainers_own_step(photo_dir, style_image, tmp_path):
    """The breakdown times Trainer.train_step itself: with its hooks the update is the same to the
    bit, every phase took time, and the hooks are gone afterwards."""
    from benchmarks.bench_train import PHASES, timed_steps
    from styler.config import DiscriminatorConfig, Features, TrainConfig
    from styler.training.trainer import Trainer

    config = TrainConfig(steps=2, batch_size=2, image_size=32, style_size=64, features=Features.RANDOM,
                         num_workers=0, generator=GeneratorConfig(base_channels=4, num_residual=1),
                         discriminator=DiscriminatorConfig(base_channels=4))
    batch = torch.rand(2, 3, 32, 32)
    a = Trainer(config, style_image, photo_dir, tmp_path / "w", torch.device("cpu"), run_dir=tmp_path / "a")
    b = Trainer(config, style_image, photo_dir, tmp_path / "w", torch.device("cpu"), run_dir=tmp_path / "b")
    a.train_step(batch)
    seconds = timed_steps(b, iter([(batch, [])]), 1)
    assert set(seconds) == set(PHASES) and all(seconds[p] > 0 for p in PHASES)
    for name, value in a.generator.state_dict().items():
        assert torch.equal(b.generator.state_dict()[name], value), name
    for name, value in a.discriminator.state_dict().items():
        assert torch.equal(b.discriminator.state_dict()[name], value), name
    assert not b.generator._forward_hooks and not b.loss.extractor._forward_pre_hooks


def test_compare_quality_writes_losses_and_a_side_by_side(photo_dir, style_image, tmp_path):
    from PIL import Image

    from benchmarks import compare_quality
    from tests.conftest import make_photo

    val = tmp_path / "val"
    for i in range(2):
        make_photo(val / f"v{i}.png", size=(40, 36), seed=20 + i)
    result = compare_quality.main([
        "--photos", str(photo_dir), "--val", str(val), "--style", str(style_image), "--steps", "2",
        "--batch-size", "1", "--image-size", "32", "--style-size", "64", "--val-size", "32",
        "--feature-width-divisor", "8", "--threads", "1", "--out", str(tmp_path / "q")])
    for name in ("styler", "transformer_net"):
        assert result[name]["content_plus_style"] > 0
    assert result["val_loss_ratio"] > 0
    assert json.loads((tmp_path / "q" / "result.json").read_text())["steps"] == 2
    assert Image.open(tmp_path / "q" / "side_by_side.png").size == (3 * 32, 2 * 32)


def test_gpu_check_dry_run_writes_every_result(tmp_path):
    """The GPU script's own logic (steps, output files, summary) on tiny CPU sizes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OUT": str(tmp_path / "gpu_out"), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(repo / "benchmarks" / "gpu_check.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    out = tmp_path / "gpu_out"
    for name in ("apply_bf16.jsonl", "train.jsonl", "quality/result.json", "summary.txt"):
        assert (out / name).is_file(), name
    summary = (out / "summary.txt").read_text()
    assert "apply_bf16 32: styler" in summary and "train 32 px" in summary and "quality styler" in summary
    bad = subprocess.run(["bash", str(repo / "benchmarks" / "gpu_check.sh"), "--bogus"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_bench_heap_times_each_arm_and_heap_in_its_own_process(photo_dir, style_image, capsys):
    from benchmarks import bench_heap
    from tests.test_heap import GLIBC

    row = bench_heap.main(["--size", "32", "--steps", "1", "--rounds", "1", "--threads", "1", "--json",
                           "--batch-size", "1", "--content-dir", str(photo_dir), "--style", str(style_image),
                           "--style-size", "64"])
    assert json.loads(capsys.readouterr().out)["size"] == 32
    for key in ("after_retain", "after_system", "before_system"):
        assert row[f"{key}_ms"] > 0 and row[f"{key}_faults_per_step"] >= 0 and row[f"{key}_peak_rss_mb"] > 0
    assert row["retained"] is GLIBC  # the after arm's child did keep its freed memory
    assert row["heap_speedup"] > 0 and row["speedup"] > 0 and row["speedup_default_heap"] > 0


def test_bench_heap_apply_times_a_bundled_style_on_one_photo(capsys):
    from benchmarks import bench_heap
    from tests.test_heap import GLIBC

    row = bench_heap.main(["--apply", "--image-size", "64", "48", "--steps", "1", "--rounds", "1", "--threads", "1"])
    out = capsys.readouterr().out
    assert "apply 64x48" in out and "retained memory:" in out
    assert row["apply_retain_ms"] > 0 and row["apply_system_ms"] > 0 and row["retained"] is GLIBC
    assert "speedup" not in row and row["heap_speedup"] > 0
