"""`styler train` in everyday use: nothing replaced by surprise, training longer, honest metadata."""

import json
import os
from pathlib import Path

import pytest
import torch

from styler.checkpoint import bundled_dir, read_info
from tests.test_train_cli import TINY, in_tmp, one_line_error, train  # noqa: F401  (in_tmp: autouse fixture)


def base(photo_dir, style_image, *extra):
    return ("--style", style_image, "--content-dir", photo_dir, *TINY, *extra)


def test_existing_style_is_not_replaced_without_overwrite(tmp_path, photo_dir, style_image):
    assert train(*base(photo_dir, style_image, "--steps", 2, "--name", "a")).exit_code == 0
    before = (tmp_path / "weights" / "a.safetensors").read_bytes()
    result = train(*base(photo_dir, style_image, "--steps", 2, "--name", "a", "--run-dir", "runs/other"))
    one_line_error(result, "a style named 'a' already exists")
    assert "--overwrite" in result.stderr and (tmp_path / "weights" / "a.safetensors").read_bytes() == before
    assert not (tmp_path / "runs" / "other").exists()
    result = train(*base(photo_dir, style_image, "--steps", 2, "--name", "a", "--overwrite"))
    assert result.exit_code == 0, result.output


def test_a_bundled_name_is_refused_then_hidden_never_replaced(tmp_path, photo_dir, style_image):
    bundled = (bundled_dir() / "starry.safetensors").read_bytes()
    one_line_error(train(*base(photo_dir, style_image, "--steps", 1, "--name", "starry")), "is a bundled style")
    result = train(*base(photo_dir, style_image, "--steps", 1, "--name", "starry", "--overwrite", "--val-fraction",
                         0))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "weights" / "starry.safetensors").is_file()
    assert (bundled_dir() / "starry.safetensors").read_bytes() == bundled


def test_never_writes_into_an_installed_package(photo_dir, style_image, monkeypatch):
    monkeypatch.setattr("styler.checkpoint.in_source_checkout", lambda: False)
    result = train(*base(photo_dir, style_image, "--steps", 1, "--name", "new", "--weights-dir", bundled_dir(),
                         "--overwrite"))
    one_line_error(result, "inside the installed package")
    assert not (bundled_dir() / "new.safetensors").exists()


def test_a_finished_run_folder_is_not_wiped_without_overwrite(tmp_path, photo_dir, style_image):
    assert train(*base(photo_dir, style_image, "--steps", 2, "--name", "a", "--run-dir", "runs/x")).exit_code == 0
    metrics = (tmp_path / "runs" / "x" / "metrics.jsonl").read_text()
    one_line_error(train(*base(photo_dir, style_image, "--steps", 2, "--name", "b", "--run-dir", "runs/x")),
                   "holds a finished run")
    assert (tmp_path / "runs" / "x" / "metrics.jsonl").read_text() == metrics


@pytest.mark.parametrize("option", ["--weights-dir", "--run-dir"])
def test_unusable_output_folders_fail_before_training(tmp_path, photo_dir, style_image, option, monkeypatch):
    (tmp_path / "file").write_text("x")
    one_line_error(train(*base(photo_dir, style_image, "--steps", 1, option, tmp_path / "file" / "sub")),
                   "is a file, not a folder")
    (tmp_path / "ro").mkdir()
    real_access = os.access  # tests may run as root, who may write anywhere
    monkeypatch.setattr("styler.resume.os.access", lambda path, mode: "ro" not in Path(path).parts and
                        real_access(path, mode))
    one_line_error(train(*base(photo_dir, style_image, "--steps", 1, option, tmp_path / "ro" / "sub")),
                   "is not writable")


def test_metadata_says_steps_trained_and_the_kept_generators_step_and_losses(tmp_path, photo_dir, style_image):
    result = train(*base(photo_dir, style_image, "--steps", 4, "--name", "m", "--val-every", 1, "--log-every", 1,
                         "--patience", 0, "--json"))
    assert result.exit_code == 0, result.output
    meta = read_info(tmp_path / "weights" / "m.safetensors").metadata
    records = {r["step"]: r for r in map(json.loads, (tmp_path / "runs/m/metrics.jsonl").read_text().splitlines())}
    best = min(records, key=lambda s: (records[s]["val_loss"], s))
    assert meta["steps_trained"] == 4 and meta["best_step"] == best
    assert meta["final_losses"]["total"] == pytest.approx(records[best]["total"], rel=1e-5)
    torch.manual_seed(0)
