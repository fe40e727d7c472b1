"""`styler train` in everyday use: nothing replaced by surprise, training longer, honest metadata."""

import importlib
import json
import math
import os
from pathlib import Path

import pytest
import torch

from styler.config import Features
from styler.io.weights import bundled_dir, read_info
from tests import test_train_cli
from tests.test_train_cli import TINY, one_line_error, train

in_tmp = test_train_cli.in_tmp  # its autouse fixture: every test here runs in tmp_path
ROOT = Path(__file__).resolve().parent.parent


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


def test_the_examples_bundled_name_trains_and_says_it_hides_the_bundled_style(tmp_path, photo_dir, style_image):
    """`styler train --style starry.png ...` names the style starry, like the bundled one: it
    trains into your folder, says in one line that it hides the bundled one, never replaces it."""
    bundled = (bundled_dir() / "starry.safetensors").read_bytes()
    starry = style_image.rename(style_image.with_name("starry.png"))
    result = train(*base(photo_dir, starry, "--steps", 1, "--val-fraction", 0))
    assert result.exit_code == 0, result.output
    note = [line for line in result.stderr.splitlines() if line.startswith("note:")]
    assert note == ["note: your 'starry' will hide the bundled 'starry'; to keep both, pass another --name"]
    assert read_info(tmp_path / "weights" / "starry.safetensors").name == "starry"
    assert (bundled_dir() / "starry.safetensors").read_bytes() == bundled
    one_line_error(train(*base(photo_dir, starry, "--steps", 1)), "a style named 'starry' already exists")
    result = train(*base(photo_dir, starry, "--steps", 1, "--val-fraction", 0, "--overwrite"))
    assert result.exit_code == 0 and "note:" not in result.output  # yours already hid it


@pytest.mark.parametrize("folder", [bundled_dir(), ROOT / "weights"])
def test_never_writes_into_the_bundled_styles_not_even_from_a_clone(photo_dir, style_image, folder):
    result = train(*base(photo_dir, style_image, "--steps", 1, "--name", "new", "--weights-dir", folder,
                         "--overwrite"))
    one_line_error(result, "holds styler's bundled styles, inside the package")
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
    monkeypatch.setattr("styler.io.files.os.access", lambda path, mode: "ro" not in Path(path).parts and
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


def metrics(run):
    return {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())}


def cosine(start, end, done, total):
    return end + (start - end) * (1 + math.cos(math.pi * done / total)) / 2


def test_train_longer_continues_the_cosine_planned_for_the_new_length(tmp_path, photo_dir, style_image):
    args = base(photo_dir, style_image, "--steps", 4, "--name", "x", "--log-every", 1, "--val-fraction", 0)
    assert train(*args).exit_code == 0
    run = tmp_path / "runs" / "x"
    floor = metrics(run)[4]["lr"]
    assert floor == pytest.approx(1e-4)
    result = train("--resume", run, "--steps", 8)
    assert result.exit_code == 0, result.output
    records = metrics(run)
    assert sorted(records) == list(range(1, 9))
    # Steps 5-8 learn at the rates of an 8-step cosine from the start, not at the 4-step run's floor.
    assert [records[s]["lr"] for s in range(5, 9)] == pytest.approx([cosine(1e-3, 1e-4, s, 8) for s in range(5, 9)])
    assert records[5]["lr"] > 3 * floor
    spec = json.loads((run / "run.json").read_text())
    assert spec["config"]["steps"] == 8
    assert spec["schedule"] == [{"from_step": 4, "to_step": 8, "lr_start": pytest.approx(cosine(1e-3, 1e-4, 4, 8)),
                                 "lr_end": pytest.approx(1e-4)}]
    assert read_info(tmp_path / "weights" / "x.safetensors").metadata["steps_trained"] == 8


def test_resume_force_lr_really_trains_at_that_rate(tmp_path, photo_dir, style_image, monkeypatch):
    args = base(photo_dir, style_image, "--steps", 4, "--name", "x", "--log-every", 1, "--val-fraction", 0)
    assert train(*args).exit_code == 0
    run = tmp_path / "runs" / "x"
    one_line_error(train("--resume", run, "--steps", 8, "--lr", 0.02), "lr: 0.001 -> 0.02")
    seen = []
    step = torch.optim.Adam.step

    def spy(self, *a, **k):
        seen.append(self.param_groups[0]["lr"])
        return step(self, *a, **k)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    result = train("--resume", run, "--steps", 8, "--lr", 0.02, "--force", "--adv-weight", 0)
    assert result.exit_code == 0, result.output
    # The added steps train on the 8-step cosine of the new --lr, not at the old floor.
    assert seen == pytest.approx([cosine(0.02, 0.002, i, 8) for i in range(4, 8)])
    assert json.loads((run / "run.json").read_text())["schedule"][0]["lr_start"] == pytest.approx(0.011)


def test_resuming_a_finished_run_with_nothing_to_add_says_so_at_once(tmp_path, photo_dir, style_image):
    assert train(*base(photo_dir, style_image, "--steps", 2, "--name", "x")).exit_code == 0
    photo_dir.rename(tmp_path / "gone")  # were the photos read first, this would fail on them instead
    one_line_error(train("--resume", tmp_path / "runs" / "x"), "finished at step 2; nothing to add")
    one_line_error(train("--resume", tmp_path / "runs" / "x", "--steps", 2), "pass a larger --steps than 2")


def test_steps_below_the_resumed_step_is_one_line(tmp_path, photo_dir, style_image, monkeypatch):
    from tests.test_train_cli import interrupt_at_step_2

    undo = interrupt_at_step_2(monkeypatch)
    assert train(*base(photo_dir, style_image, "--steps", 4, "--name", "x")).exit_code == 130
    undo()
    one_line_error(train("--resume", tmp_path / "runs" / "x", "--steps", 2), "--steps 2 is not beyond step 2")


def test_an_extended_run_interrupted_and_resumed_matches_one_that_was_not(tmp_path, photo_dir, style_image,
                                                                          monkeypatch):
    from tests.test_train_cli import interrupt_at_step_2

    for name in ("a", "b"):
        args = base(photo_dir, style_image, "--steps", 3, "--name", name, "--log-every", 1, "--val-fraction", 0)
        assert train(*args).exit_code == 0
    assert train("--resume", "runs/a", "--steps", 6).exit_code == 0
    undo = interrupt_at_step_2(monkeypatch, step=4)
    assert train("--resume", "runs/b", "--steps", 6).exit_code == 130
    undo()
    assert train("--resume", "runs/b").exit_code == 0
    a, b = metrics(tmp_path / "runs/a"), metrics(tmp_path / "runs/b")
    assert [a[s]["lr"] for s in range(1, 7)] == [b[s]["lr"] for s in range(1, 7)]
    assert [a[s]["total"] for s in range(1, 7)] == [b[s]["total"] for s in range(1, 7)]
    assert len(json.loads((tmp_path / "runs/b/run.json").read_text())["schedule"]) == 1


def test_force_cannot_change_the_architecture(tmp_path, photo_dir, style_image, monkeypatch):
    from tests.test_train_cli import interrupt_at_step_2

    undo = interrupt_at_step_2(monkeypatch)
    assert train(*base(photo_dir, style_image, "--steps", 4, "--name", "x")).exit_code == 130
    undo()
    one_line_error(train("--resume", "runs/x", "--force", "--base-channels", 8),
                   "has another generator")


def test_a_checkpoint_with_missing_keys_is_one_line(tmp_path, photo_dir, style_image, monkeypatch):
    from tests.test_train_cli import interrupt_at_step_2

    undo = interrupt_at_step_2(monkeypatch)
    assert train(*base(photo_dir, style_image, "--steps", 4, "--name", "x")).exit_code == 130
    undo()
    path = tmp_path / "runs" / "x" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    original = path.read_bytes()
    first = next(iter(state["generator"]))
    del state["generator"][first]
    torch.save(state, path)
    one_line_error(train("--resume", "runs/x"), "checkpoint is incomplete or does not fit this run (RuntimeError")
    assert f'Missing key(s) in state_dict: "{first}"' in train("--resume", "runs/x").stderr
    path.write_bytes(original)
    state = torch.load(path, weights_only=True)
    del state["opt_d"]
    torch.save(state, path)
    one_line_error(train("--resume", "runs/x"), "(KeyError")


def test_out_of_memory_names_batch_and_image_size(photo_dir, style_image, monkeypatch):
    from styler.training.trainer import Trainer

    def oom(self, images):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(Trainer, "train_step", oom)
    one_line_error(train(*base(photo_dir, style_image, "--steps", 2)),
                   "out of memory at step 1 on cpu with --batch-size 2 and --image-size 32; lower one of them")


@pytest.mark.parametrize("error, line", [("data", "error: worker says no"),
                                         ("os", "error: a data-loading worker failed: OSError: disk gone")])
def test_errors_inside_dataloader_workers_are_one_line(photo_dir, style_image, monkeypatch, error, line):
    from styler.errors import DataError
    from styler.training.data import ContentDataset

    def fail(self, item):
        raise DataError("worker says no") if error == "data" else OSError("disk gone")

    monkeypatch.setattr(ContentDataset, "__getitem__", fail)  # inherited by the forked workers
    args = [a if a != "0" else "1" for a in base(photo_dir, style_image, "--steps", 2)]  # --workers 1
    result = train(*args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == line and result.stderr.count("error: ") == 1


def test_a_read_only_cache_for_a_converted_vgg_file_is_one_line(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from styler.nn import vgg as features
    from styler.config import Features, Preprocess
    from styler.errors import FeatureWeightsError

    def refuse(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: Read-only file system (os error 30)")

    monkeypatch.setattr(features, "read_vgg_file", lambda path, kind, divisor: ({}, Preprocess.CAFFE))
    monkeypatch.setattr("safetensors.torch.save_file", refuse)
    (tmp_path / "vgg.h5").write_bytes(b"x")
    with pytest.raises(FeatureWeightsError, match="cannot write the converted vgg.h5 into the cache .*TORCH_HOME"):
        features._load_converted(Features.VGG16, tmp_path / "vgg.h5", 1)


def test_verbose_after_the_command_logs_setup_steps_with_times(photo_dir, style_image):
    result = train(*base(photo_dir, style_image, "--steps", 1, "--name", "v", "-v"))
    assert result.exit_code == 0, result.output
    for step in ("reading the photos: ", "loading the loss network (random): ",
                 "preparing the painting's statistics (64x64 px): "):
        line = next((line for line in result.stderr.splitlines() if line.startswith(step)), None)
        assert line is not None and line.endswith("s"), result.stderr
    assert "layer 1 of" not in result.stderr  # per-layer detail is for -vv


def test_quiet_after_the_command(photo_dir, style_image):
    result = train(*base(photo_dir, style_image, "--steps", 1, "--name", "q", "-q"))
    assert result.exit_code == 0 and result.output == ""


def test_setup_status_follows_each_step_on_a_terminal(photo_dir, style_image, monkeypatch):
    from rich.console import Console

    train_command = importlib.import_module("styler.cli.train_progress")
    shown = []
    monkeypatch.setattr(train_command, "console", lambda stderr=True: Console(force_terminal=True, file=open(os.devnull, "w")))
    monkeypatch.setattr("rich.status.Status.update", lambda self, status=None, **kw: shown.append(status))
    result = train(*base(photo_dir, style_image, "--steps", 1, "--name", "s"))
    assert result.exit_code == 0, result.output
    assert "preparing training: loading the loss network (random)..." in shown
    assert "preparing training: preparing the painting's statistics (64x64 px)..." in shown
    assert not any("relu" in s or "layer" in s for s in shown)  # the user's words, not the loss's internals


def test_verbose_lines_print_above_the_setup_spinner_not_into_it(photo_dir, style_image, monkeypatch):
    import io

    from rich.console import Console

    train_command = importlib.import_module("styler.cli.train_progress")
    screen = io.StringIO()
    monkeypatch.setattr(train_command, "console", lambda stderr=True: Console(force_terminal=True, file=screen,
                                                                              width=80))
    result = train(*base(photo_dir, style_image, "--steps", 1, "--name", "s", "-v"))
    assert result.exit_code == 0, result.output
    # The spinner's console prints them (rich moves the spinner below each line); none goes around it.
    assert "loading the loss network (random): " in screen.getvalue()
    assert "loading the loss network (random): " not in result.stderr


def test_huge_painting_message_names_max_pixels_and_the_flag_lets_it_train(tmp_path, photo_dir, monkeypatch):
    from PIL import Image

    from tests.conftest import make_photo

    style = make_photo(tmp_path / "huge.png", size=(120, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    result = train("--style", style, "--content-dir", photo_dir, *TINY, "--steps", 1)
    one_line_error(result, "raise the limit with --max-pixels if you trust this file")
    result = train("--style", style, "--content-dir", photo_dir, *TINY, "--steps", 1, "--max-pixels", 20_000)
    assert result.exit_code == 0, result.output


def test_the_library_default_has_no_tv_term_and_the_help_says_so(photo_dir, style_image):
    from click.testing import CliRunner

    from styler.cli import main
    from styler.config import Features, LossConfig
    from styler.nn.vgg import build_feature_extractor
    from styler.training.losses import PerceptualLoss

    help_text = " ".join(CliRunner().invoke(main, ["train", "--help"], terminal_width=200).output.split())
    assert "[default: (0.0 (off); 1.0 with --features random)]" in help_text
    torch.manual_seed(0)
    extractor = build_feature_extractor(Features.RANDOM, ("relu1_1", "relu2_1"), seed=0)
    config = LossConfig()
    loss = PerceptualLoss(extractor, "relu2_1", ("relu1_1",), torch.rand(1, 3, 32, 32), config)
    terms = loss(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32))
    assert terms["tv"] > 0
    assert torch.equal(terms["total"], config.content_weight * terms["content"] + config.style_weight * terms["style"])


def test_loss_curve_plots_the_training_loss_validation_measures(tmp_path, photo_dir, style_image):
    from styler.training.previews import curve_series

    result = train(*base(photo_dir, style_image, "--steps", 2, "--name", "c", "--log-every", 1, "--val-every", 1))
    assert result.exit_code == 0, result.output
    records = list(metrics(tmp_path / "runs" / "c").values())
    assert all(r["perceptual"] != r["total"] for r in records)  # the adversarial term is in total only
    train_points, val_points = curve_series(records)
    assert train_points == [(float(r["step"]), r["perceptual"]) for r in records]
    assert [p[0] for p in val_points] == [1.0, 2.0]
    assert curve_series([{"step": 1, "total": 3.0}])[0] == [(1.0, 3.0)]  # runs logged before "perceptual"


def test_library_callers_replace_their_own_files_but_never_the_bundled_styles(tmp_path, photo_dir, style_image):
    from dataclasses import replace

    from styler.config import GeneratorConfig, TrainConfig
    from styler.errors import ConfigError
    from styler.training.trainer import Trainer

    config = replace(TrainConfig(), name="lib", steps=1, image_size=32, style_size=64, batch_size=2, num_workers=0,
                     features=Features.RANDOM, val_fraction=0, generator=GeneratorConfig(base_channels=4,
                                                                                        num_residual=1))
    for _ in range(2):  # a benchmark or study script rerun into the same folders
        Trainer(config, style_image, photo_dir, tmp_path / "w", torch.device("cpu"), run_dir=tmp_path / "r").run()
    with pytest.raises(ConfigError, match="bundled styles, inside the package"):
        Trainer(config, style_image, photo_dir, bundled_dir(), torch.device("cpu"), run_dir=tmp_path / "r2")
