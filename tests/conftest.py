"""Shared fixtures: seeded tiny tensors, synthetic images, an isolated environment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image


# Tests use tiny tensors: one thread is as fast as two, and OpenMP threads that spin-wait
# make everything crawl when test processes (DataLoader workers, torchrun ranks) share 2 cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory, monkeypatch):
    """No test may touch the network, the user's styles and runs or torch's real cache."""
    torch.manual_seed(0)
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    # styler's data folder (styles, runs); also for `python -m styler` in a subprocess.
    monkeypatch.setenv("STYLER_HOME", str(tmp_path_factory.mktemp("styler_home")))
    monkeypatch.setenv("STYLER_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # for subprocesses (torchrun, python -m styler)
    monkeypatch.delenv("STYLER_WEIGHTS_DIR", raising=False)
    torch.hub.set_dir(str(home / "hub"))
    yield


def one_line_error(result, fragment: str) -> None:
    """A CLI result that failed with exactly one error line, ``error: ...`` containing ``fragment``,
    as the last line on stderr (what a run said before it, such as its run folder, may stand
    above it), and no traceback anywhere."""
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and fragment in errors[0], result.output


def make_photo(path: Path, size: tuple[int, int] = (80, 64), seed: int = 0, mode: str = "RGB") -> Path:
    """A smooth synthetic 'photo' (gradients plus blobs) so losses are not degenerate."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / max(w - 1, 1), yy / max(h - 1, 1), 0.5 + 0.5 * np.sin(xx / 5.0 + seed)], -1)
    base += rng.normal(0, 0.05, base.shape)
    array = (np.clip(base, 0, 1) * 255).astype(np.uint8)
    image = Image.fromarray(array, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


@pytest.fixture
def photo_dir(tmp_path) -> Path:
    root = tmp_path / "photos"
    for i in range(5):
        make_photo(root / f"p{i}.png", seed=i)
    make_photo(root / "nested" / "deeper" / "q.JPG", size=(72, 96), seed=9)
    return root


@pytest.fixture
def style_image(tmp_path) -> Path:
    rng = np.random.default_rng(42)
    stripes = np.zeros((96, 96, 3), np.uint8)
    stripes[..., 0] = (np.sin(np.arange(96) / 2.0)[None, :] * 120 + 128).astype(np.uint8)
    stripes[..., 2] = rng.integers(0, 255, (96, 96), dtype=np.uint8)
    path = tmp_path / "style.png"
    Image.fromarray(stripes).save(path)
    return path


@pytest.fixture
def weights(tmp_path) -> Path:
    """A weights folder with one tiny untrained style, ``demo`` (the video and animation tests'
    style; modules with a ``weights`` fixture of their own use theirs)."""
    from styler.io.weights import save_generator
    from styler.nn import Generator
    from tests.media import TINY

    torch.manual_seed(0)
    save_generator(tmp_path / "weights" / "demo.safetensors", Generator(TINY), {"style_name": "demo"})
    return tmp_path / "weights"
