"""The painter's head start: new ImageNet-feature styles start from it, `--init-from none` does not,
and a missing or damaged head start says the way out."""

import json

import pytest
import torch
from safetensors.torch import load_file

from styler.config import HEAD_START, Features, GeneratorConfig, defaults_for
from styler.io.weights import head_start_path, read_info
from tests import test_train_cli
from tests.test_train_cli import one_line_error, train

in_tmp = test_train_cli.in_tmp  # its autouse fixture: every test here runs in tmp_path


@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """VGG-16's convolutions with random weights in torchvision's key layout: the loss network
    of an ImageNet-feature run, without the download (its values do not matter here)."""
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    torch.save({f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}, path)
    return path


def vgg_run(photo_dir, style_image, vgg_file, *extra):
    return train("--style", style_image, "--content-dir", photo_dir, "--vgg-weights", vgg_file,
                 "--vgg-preprocess", "torchvision", "--image-size", 32, "--style-size", 32, "--batch-size", 2,
                 "--workers", 0, "--device", "cpu", "--steps", 1, "--adv-weight", 0, "--val-fraction", 0, *extra)


def test_the_head_start_ships_with_the_package_in_the_default_layout():
    info = read_info(head_start_path())
    assert info.generator == GeneratorConfig() == defaults_for(Features.VGG16).generator
    assert info.metadata["role"] == "head-start" and len(info.metadata["paintings"]) >= 10
    assert "vgg16" in info.metadata["features_source"]  # which weights trained it is recorded
    assert defaults_for(Features.VGG16).init_from == HEAD_START and not defaults_for(Features.RANDOM).init_from


def test_new_vgg_styles_start_from_the_head_start_unless_none(tmp_path, photo_dir, style_image, vgg_file):
    result = vgg_run(photo_dir, style_image, vgg_file, "--lr", 1e-9, "--name", "h")
    assert result.exit_code == 0, result.output
    head, mine = load_file(head_start_path()), load_file(tmp_path / "weights" / "h.safetensors")
    assert all(torch.allclose(head[k], mine[k], atol=1e-5) for k in head)  # one step at lr 1e-9 from it
    assert json.loads((tmp_path / "runs/h/run.json").read_text())["config"]["init_from"] == HEAD_START
    assert read_info(tmp_path / "weights" / "h.safetensors").metadata["init_from"] == HEAD_START

    result = vgg_run(photo_dir, style_image, vgg_file, "--lr", 1e-9, "--name", "s", "--init-from", "none")
    assert result.exit_code == 0, result.output
    scratch = load_file(tmp_path / "weights" / "s.safetensors")
    assert not all(torch.allclose(head[k], scratch[k], atol=1e-3) for k in head)


def test_a_missing_head_start_names_the_way_out(tmp_path, photo_dir, style_image, monkeypatch):
    monkeypatch.setattr("styler.io.weights.head_start_path", lambda: tmp_path / "gone.safetensors")
    result = train("--style", style_image, "--content-dir", photo_dir)
    one_line_error(result, "the painter's head start is missing")
    assert "--init-from none" in result.stderr and not (tmp_path / "runs").exists()


def test_a_damaged_head_start_names_the_way_out(tmp_path, photo_dir, style_image, monkeypatch):
    damaged = tmp_path / "head_start.safetensors"
    damaged.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    monkeypatch.setattr("styler.io.weights.head_start_path", lambda: damaged)
    result = train("--style", style_image, "--content-dir", photo_dir)
    one_line_error(result, "the painter's head start cannot be read")
    assert "--init-from none" in result.stderr


def test_generator_options_the_head_start_cannot_take_name_init_from_none(photo_dir, style_image):
    result = train("--style", style_image, "--content-dir", photo_dir, "--base-channels", 8)
    assert result.exit_code == 2 and "--init-from none" in result.stderr and "Traceback" not in result.output
