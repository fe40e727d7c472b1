"""The bundled styles in weights/ and the README's main command work on a fresh clone."""

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from styler.apply import Stylizer
from styler.checkpoint import list_weights
from styler.images import pil_to_tensor
from styler.cli import main

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ("starry", "shipwreck", "matisse")


def test_bundled_styles_load_and_say_how_they_were_trained():
    found = list_weights(ROOT / "weights")
    assert not [entry for entry in found if isinstance(entry, Exception)], found  # before .name is read
    infos = {info.name: info for info in found}
    assert set(BUNDLED) <= set(infos)
    for name in BUNDLED:
        info = infos[name]
        assert info.features == "random"  # honest label: no ImageNet weights were used
        assert (ROOT / "samples/styles" / info.metadata["style_file"]).is_file()
        assert info.path.stat().st_size < 4 * 1024 * 1024


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_style_changes_a_held_out_photo(name):
    photo = Image.open(ROOT / "samples/content/coffee.jpg").convert("RGB").resize((96, 64))
    out = Stylizer.load(ROOT / "weights" / f"{name}.safetensors", device="cpu")(photo)
    a, b = pil_to_tensor(photo).flatten(1).T * 255, pil_to_tensor(out).flatten(1).T * 255
    assert out.size == photo.size
    assert (a - b).abs().mean() > 10  # visibly stylized (of 255), not the identity
    assert torch.corrcoef(torch.stack([a.mean(1), b.mean(1)]))[0, 1] > 0.5  # the scene stays


def test_readme_main_command(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    assert "styler apply samples/content/astronaut.jpg --style starry -o out/astronaut_starry.jpg" in readme
    monkeypatch.chdir(ROOT)  # the command runs from the repository root, weights/ found by default
    out = tmp_path / "out" / "astronaut_starry.jpg"
    result = CliRunner().invoke(main, ["apply", "samples/content/astronaut.jpg", "--style", "starry", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert Image.open(out).size == Image.open(ROOT / "samples/content/astronaut.jpg").size
