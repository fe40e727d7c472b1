"""`styler train` end to end: run folder files, Ctrl-C and resume, init-from, bad input, torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from styler.cli import main
from styler.io.images import load_style_image
from styler.io.weights import read_info
from styler.training.trainer import Trainer
from tests.conftest import make_photo, one_line_error

TINY = ["--features", "random", "--image-size", "32", "--style-size", "64", "--batch-size", "2", "--workers", "0",
        "--device", "cpu", "--base-channels", "4", "--residual-blocks", "1"]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    # The data folder (weights/, runs/<name>) is the test's own folder, where the tests look.
    monkeypatch.setenv("STYLER_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train(*args):
    return CliRunner().invoke(main, ["train", *map(str, args)], catch_exceptions=False)


def test_run_folder_has_metrics_previews_curve_and_sheet(tmp_path, photo_dir, style_image):
    result = train("--style", style_image, "--content-dir", photo_dir, "--steps", 4, "--log-every", 1,
                   "--val-every", 2, "--preview-every", 2, "--name", "demo", "--json", *TINY)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    run = tmp_path / "runs" / "demo"
    assert summary["run_dir"] == str(tmp_path / "runs" / "demo") and summary["best_step"] in (2, 4)
    assert summary["weights"] == str(tmp_path / "weights" / "demo.safetensors")  # --json paths are absolute
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert set(records[0]) >= {"content", "style", "tv", "adv", "d", "d_real", "d_fake", "total", "lr",
                               "steps_per_s"}
    assert [r["step"] for r in records if "val_loss" in r] == [2, 4]
    for name in ("previews/step_000002.png", "previews/step_000004.png"):
        assert Image.open(run / name).size == (3 * (2 * 32 + 8), 32 + 4)  # 3 validation photos, pairs
    assert Image.open(run / "loss_curve.png").size == (720, 400)
    Image.open(run / "contact_sheet.png").verify()
    assert json.loads((run / "run.json").read_text())["config"]["log_every"] == 1
    meta = read_info(tmp_path / "weights" / "demo.safetensors").metadata
    assert meta["best_step"] == summary["best_step"] and meta["val_loss"] == pytest.approx(summary["val_loss"])
    assert meta["validation_images"] == 3 and meta["content_images"] == 3


def interrupt_at_step_2(monkeypatch, step=2):
    """Make training raise KeyboardInterrupt after ``step`` (as Ctrl-C would); returns the undo."""
    after_step = Trainer._after_step

    def interrupt_at(self, losses, rate):
        value = after_step(self, losses, rate)
        if self.step == step:
            raise KeyboardInterrupt
        return value

    monkeypatch.setattr(Trainer, "_after_step", interrupt_at)
    # (monkeypatch.undo() would also undo the chdir of the in_tmp fixture)
    return lambda: monkeypatch.setattr(Trainer, "_after_step", after_step)


def test_ctrl_c_then_resume_from_the_run_folder(tmp_path, photo_dir, style_image, monkeypatch):
    restore = interrupt_at_step_2(monkeypatch)
    args = ["--style", style_image, "--content-dir", photo_dir, "--steps", 4, *TINY]
    result = train(*args)
    assert result.exit_code == 130
    assert result.stderr.strip().endswith("error: interrupted at step 2; checkpoint saved, resume with: "
                                          f"styler train --resume {tmp_path / 'runs' / 'style'}")
    restore()
    one_line_error(train("--resume", "runs/style", "--lr", 0.002), "lr: 0.001 -> 0.002")
    one_line_error(train(*args), "unfinished run (step 2)")
    result = train("--resume", "runs/style", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["steps"] == 4
    # same options, flag form: the finished run has nothing to add
    one_line_error(train(*args, "--resume"), "finished at step 4; nothing to add")


def test_resume_keeps_the_skipped_images_count(tmp_path, photo_dir, style_image, monkeypatch):
    # The checkpoint stores which photos were unreadable; resuming must restore them as paths.
    (photo_dir / "broken.png").write_bytes(b"junk")
    restore = interrupt_at_step_2(monkeypatch)
    args = ["--style", style_image, "--content-dir", photo_dir, "--steps", 4, "--val-fraction", 0, *TINY]
    assert train(*args).exit_code == 130
    restore()
    result = train("--resume", "runs/style", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["skipped_images"] == [str(photo_dir / "broken.png")]


def test_init_from_an_existing_style(tmp_path, photo_dir, style_image):
    assert train("--style", style_image, "--content-dir", photo_dir, "--steps", 1, "--name", "a", *TINY).exit_code == 0
    result = train("--style", style_image, "--content-dir", photo_dir, "--steps", 1, "--name", "b", "--init-from", "a",
                   *TINY[:-4])  # no generator options: the architecture comes from a
    assert result.exit_code == 0, result.output
    info = read_info(tmp_path / "weights" / "b.safetensors")
    assert info.metadata["init_from"] == "a" and info.generator.base_channels == 4
    one_line_error(train("--style", style_image, "--content-dir", photo_dir, "--name", "c", "--init-from", "a",
                         *TINY[:-4], "--base-channels", "8"), "its generator is")
    one_line_error(train("--style", style_image, "--content-dir", photo_dir, "--init-from", "nope", *TINY),
                   "no style named 'nope'")


def test_random_features_start_from_the_offline_recipe(tmp_path, photo_dir, style_image):
    from styler.training.runs import RunDir

    assert train("--style", style_image, "--content-dir", photo_dir, "--steps", 1, "--name", "off", *TINY).exit_code == 0
    config = RunDir(tmp_path / "runs" / "off").read_spec().config
    assert (config.loss.style_loss.value, config.feature_width_divisor, config.loss.tv_weight) == ("sliced", 2, 1.0)
    assert config.generator.num_downsamples == 3  # the layout the offline recipe was tuned on
    assert config.discriminator.base_channels == 64  # and its discriminator (32 for ImageNet features)
    assert config.d_every == 1  # learning on every step, as tuned (every other step for ImageNet features)
    # Typed options still win over the recipe.
    assert train("--style", style_image, "--content-dir", photo_dir, "--steps", 1, "--name", "typed", *TINY,
                 "--style-loss", "gram", "--feature-width-divisor", "1", "--tv-weight", "0.5").exit_code == 0
    config = RunDir(tmp_path / "runs" / "typed").read_spec().config
    assert (config.loss.style_loss.value, config.feature_width_divisor, config.loss.tv_weight) == ("gram", 1, 0.5)


def test_downsamples_choice_is_recorded_and_sets_the_crop_multiple(tmp_path, photo_dir, style_image):
    result = train("--style", style_image, "--content-dir", photo_dir, "--steps", 1, "--name", "fine",
                   "--downsamples", "2", *TINY[:2], "--image-size", "36", *TINY[4:])  # 36: a multiple of 4, not 8
    assert result.exit_code == 0, result.output
    info = read_info(tmp_path / "weights" / "fine.safetensors")
    assert info.generator.num_downsamples == 2 and info.metadata["generator_config"]["num_downsamples"] == 2
    # --init-from takes the architecture, halvings included.
    result = train("--style", style_image, "--content-dir", photo_dir, "--steps", 1, "--name", "fine2",
                   "--init-from", "fine", *TINY[:2], "--image-size", "36", *TINY[4:-4])
    assert result.exit_code == 0, result.output
    assert read_info(tmp_path / "weights" / "fine2.safetensors").generator.stride == 4


def test_upsample_choice_is_recorded(tmp_path, photo_dir, style_image):
    result = train("--style", style_image, "--content-dir", photo_dir, "--steps", 1, "--name", "bl",
                   "--upsample", "bilinear", *TINY)
    assert result.exit_code == 0, result.output
    assert read_info(tmp_path / "weights" / "bl.safetensors").generator.upsample.value == "bilinear"


def test_discriminator_width_is_chosen_and_recorded(tmp_path, photo_dir, style_image):
    result = train("--style", style_image, "--content-dir", photo_dir, "--steps", 1, "--name", "narrow",
                   "--d-channels", "4", *TINY)
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "runs" / "narrow" / "run.json").read_text())
    assert run["config"]["discriminator"]["base_channels"] == 4
    checkpoint = torch.load(tmp_path / "runs" / "narrow" / "checkpoint.pt", weights_only=True)
    assert checkpoint["discriminator"]["net.0.parametrizations.weight.original"].shape[0] == 4


def test_discriminator_cadence_is_chosen_and_recorded(tmp_path, photo_dir, style_image):
    result = train("--style", style_image, "--content-dir", photo_dir, "--steps", 3, "--name", "every2",
                   "--d-every", "2", *TINY)
    assert result.exit_code == 0, result.output
    run = json.loads((tmp_path / "runs" / "every2" / "run.json").read_text())
    assert run["config"]["d_every"] == 2
    checkpoint = torch.load(tmp_path / "runs" / "every2" / "checkpoint.pt", weights_only=True)
    # Steps 0 and 2 of three updated the discriminator.
    assert max(int(s["step"]) for s in checkpoint["opt_d"]["state"].values()) == 2


@pytest.mark.parametrize("extra,message", [
    (["--image-size", "0"], "image size must be >= 16"),
    (["--image-size", "36"], "multiple of the generator stride 8"),
    (["--style-size", "0"], "style size must be >= 16"),
    (["--val-fraction", "0.9"], "val fraction must be between 0 and 0.5"),
    (["--val-fraction", "nan"], "val fraction must be between 0 and 0.5"),
    (["--patience", "-1"], "patience must be >= 0"),
    (["--checkpoint-every", "0"], "checkpoint_every must be >= 1"),
    (["--adv-weight", "-1"], "adv_weight must be a finite number >= 0"),
    (["--tv-weight", "inf"], "tv_weight must be a finite number >= 0"),
    (["--base-channels", "0"], "base_channels must be 1..256"),
    (["--d-channels", "0"], "discriminator base_channels must be 1..512, got 0"),
    (["--d-every", "0"], "d_every must be >= 1, got 0"),
    (["--downsamples", "2", "--image-size", "34"], "multiple of the generator stride 4"),
    (["--temporal-weight", "-2"], "temporal_weight must be a finite number >= 0"),
    (["--temporal-noise", "0.8"], "temporal noise must be between 0 and 0.5"),
    (["--temporal-weight", "5"], "image size must be >= 64 pixels with it"),
    (["--style-layers", "relu1_1,relu9_9"], "unknown random layer(s): relu9_9"),
    (["--content-layer", "conv9"], "unknown random layer(s): conv9"),
])
def test_bad_numbers_give_one_line(photo_dir, style_image, extra, message):
    one_line_error(train("--style", style_image, "--content-dir", photo_dir, *TINY, *extra), message)


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(train("--resume", tmp_path / "empty"), "not a styler run folder")


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA", "P"])
def test_style_images_in_any_mode_load_as_rgb(tmp_path, mode):
    path = make_photo(tmp_path / f"s.{'jpg' if mode == 'CMYK' else 'png'}", size=(40, 30), mode=mode)
    assert load_style_image(path, 64).shape == (1, 3, 48, 64)


def test_decompression_bomb_style_is_one_line(tmp_path, photo_dir, monkeypatch):
    style = make_photo(tmp_path / "huge.png", size=(300, 300))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    one_line_error(train("--style", style, "--content-dir", photo_dir, *TINY), "too large")


def test_one_photo_with_odd_extension_and_a_symlink_loop_trains(tmp_path, style_image):
    folder = tmp_path / "few"
    make_photo(folder / "only.PnG")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    result = train("--style", style_image, "--content-dir", folder, "--steps", 1, "--json", *TINY)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["best_step"] is None  # one photo: nothing to hold out, the last weights are saved


def test_torchrun_two_processes_on_gloo(tmp_path, photo_dir, style_image):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1",
           "NO_COLOR": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "styler",
           "train", "--style", str(style_image), "--content-dir", str(photo_dir), "--steps", "2", "--log-every", "1",
           "--name", "ddp", *TINY]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count(f"saved {tmp_path / 'weights' / 'ddp.safetensors'}") == 1  # rank 0 only
    assert proc.stderr.count(f"run folder {tmp_path / 'runs' / 'ddp'}\n") == 1  # at the start, by rank 0
    meta = read_info(tmp_path / "weights" / "ddp.safetensors").metadata
    assert meta["world_size"] == 2
    metrics = (tmp_path / "runs" / "ddp" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in metrics]
    assert steps == [1, 2]


def test_loss_layers_are_chosen_recorded_and_kept_on_resume(photo_dir, style_image):
    args = ["--style", style_image, "--content-dir", photo_dir, "--steps", 2, "--checkpoint-every", 1,
            "--name", "layers", "--content-layer", "relu2_1", "--style-layers", "relu1_1, relu2_1,relu5_1", *TINY]
    assert train(*args).exit_code == 0
    config = read_info(Path("weights/layers.safetensors")).metadata["train_config"]
    assert config["content_layer"] == "relu2_1" and config["style_layers"] == ["relu1_1", "relu2_1", "relu5_1"]
    # A resumed run reads them back from run.json (a list there) and finds nothing changed.
    result = train("--resume", "runs/layers", "--steps", 3)
    assert result.exit_code == 0, result.output
