"""`styler apply` end to end on awkward inputs, with a tiny untrained style (no training needed)."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from styler.cli import main
from styler.config import GeneratorConfig
from styler.io.weights import save_generator
from styler.nn import Generator
from tests.conftest import make_photo

TINY = GeneratorConfig(base_channels=4, num_residual=1)


@pytest.fixture
def weights(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # --max-pixels changes it
    torch.manual_seed(0)
    save_generator(tmp_path / "weights" / "demo.safetensors", Generator(TINY), {"style_name": "demo"})
    return tmp_path / "weights"


def run(args, weights):
    return CliRunner().invoke(main, [*args, "--style", "demo", "--weights-dir", str(weights), "--device", "cpu"],
                              catch_exceptions=False)


def awkward_folder(root):
    good = make_photo(root / "good.png")
    make_photo(root / "фото с пробелом.jpg")
    (root / "zero.png").write_bytes(b"")
    (root / "truncated.jpg").write_bytes((root / "фото с пробелом.jpg").read_bytes()[:300])
    (root / "text.png").write_text("not an image")
    Image.new("RGB", (100, 100), "red").save(root / "bomb.png")  # 10,000 pixels: over --max-pixels 6000
    Image.new("RGB", (1, 1), "blue").save(root / "one.png")
    photo = Image.open(good)
    photo.convert("CMYK").save(root / "cmyk.jpg")
    photo.convert("L").save(root / "gray.png")
    photo.convert("LA").save(root / "la.png")
    photo.convert("P").save(root / "pal.png")
    Image.fromarray(np.asarray(photo.convert("L")).astype(np.uint16) * 257).save(root / "i16.png")
    return root


def test_bad_inputs_fail_one_line_each_and_the_rest_complete(weights, tmp_path):
    src = awkward_folder(tmp_path / "in")
    out = tmp_path / "out"
    result = run(["apply", str(src), "-o", str(out), "--max-pixels", "6000"], weights)
    assert result.exit_code == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("failed: ")]
    assert sorted(line.split("/")[-1].split(":")[0] for line in failed) == \
        ["bomb.png", "text.png", "truncated.jpg", "zero.png"]
    assert "--max-pixels" in next(line for line in failed if "bomb.png" in line)
    done = sorted(p.name for p in out.iterdir())
    assert done == sorted(["good.png", "фото с пробелом.jpg", "one.png", "cmyk.jpg", "gray.png", "la.png",
                           "pal.png", "i16.png"])
    assert "done 8, failed 4" in result.stdout
    assert Image.open(out / "la.png").mode == "RGBA" and Image.open(out / "one.png").size == (1, 1)
    assert np.asarray(Image.open(out / "i16.png")).mean() > 20  # 16-bit not crushed to black


def test_max_pixels_raises_the_decompression_bomb_limit(weights, tmp_path):
    Image.new("RGB", (100, 100), "red").save(tmp_path / "big.png")
    assert run(["apply", str(tmp_path / "big.png"), "--max-pixels", "6000"], weights).exit_code == 1
    assert run(["apply", str(tmp_path / "big.png"), "--max-pixels", "20000"], weights).exit_code == 0


def test_unwritable_output_folder_fails_up_front_in_one_line(weights, tmp_path):
    src = make_photo(tmp_path / "a.png")
    (tmp_path / "file").write_text("a file, not a folder")
    result = run(["apply", str(src), "-o", str(tmp_path / "file" / "sub" / "b.png")], weights)
    assert result.exit_code == 1 and "is a file, not a folder" in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_skip_existing_by_default_and_overwrite(weights, photo_dir, tmp_path):
    out = tmp_path / "out"
    assert run(["apply", str(photo_dir), "-o", str(out)], weights).exit_code == 0
    (out / "p0.png").write_bytes(b"keep me")
    again = run(["apply", str(photo_dir), "-o", str(out), "--json"], weights)
    summary = json.loads(again.stdout)
    assert again.exit_code == 0 and summary["done"] == 0 and summary["skipped"] == 6
    assert (out / "p0.png").read_bytes() == b"keep me"
    redo = run(["apply", str(photo_dir), "-o", str(out), "--overwrite"], weights)
    assert redo.exit_code == 0 and Image.open(out / "p0.png").size == (80, 64)


def test_glob_format_and_quality(weights, photo_dir, tmp_path):
    low, high = tmp_path / "low", tmp_path / "high"
    for folder, quality in ((low, "20"), (high, "95")):
        result = run(["apply", str(photo_dir / "**" / "*.*"), "-o", str(folder), "--format", "jpg",
                      "--quality", quality], weights)
        assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(low).as_posix() for p in low.rglob("*.jpg")) == \
        ["nested/deeper/q.jpg"] + [f"p{i}.jpg" for i in range(5)]
    assert (low / "p0.jpg").stat().st_size < (high / "p0.jpg").stat().st_size
    flat = run(["apply", str(photo_dir), "-o", str(tmp_path / "flat"), "--no-recursive", "--json"], weights)
    assert json.loads(flat.stdout)["done"] == 5


def test_shards_cover_the_folder_once(weights, photo_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    counts = []
    for k in range(2):
        result = run(["apply", str(photo_dir), "-o", str(out), "--shard", f"{k}/2", "--json"], weights)
        counts.append(json.loads(result.stdout)["done"])
    assert sum(counts) == 6 and len(list(out.rglob("*.*"))) == 6
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    env_run = run(["apply", str(photo_dir), "-o", str(tmp_path / "env"), "--json"], weights)
    assert json.loads(env_run.stdout)["done"] == counts[1]
    bad = run(["apply", str(photo_dir), "--shard", "2/2"], weights)
    assert bad.exit_code == 1 and bad.stderr.strip().startswith("error: shard must be K/N with 0 <= K < N")


def test_precision_fp16_refused_on_cpu_and_bad_tile(weights, tmp_path):
    src = make_photo(tmp_path / "a.png")
    result = run(["apply", str(src), "--precision", "fp16"], weights)
    assert result.exit_code == 1 and "fp16 needs a CUDA GPU" in result.stderr
    result = run(["apply", str(src), "--tile", "66"], weights)  # the tiny style's stride is 4
    assert result.exit_code == 1 and "--tile 66 does not fit style 'demo'" in result.stderr
    assert "multiple of its stride, 4 (such as 64 or 68)" in result.stderr
    result = run(["apply", str(src), "--tile", "32"], weights)
    assert result.exit_code == 1 and "tile size must be at least 64" in result.stderr
    result = run(["apply", str(src), "--stats-size", "8"], weights)
    assert result.exit_code == 1 and "stats size must be >= 16" in result.stderr


def test_tiled_and_bf16_runs_write_full_size_images(weights, tmp_path):
    src = make_photo(tmp_path / "a.png", size=(150, 90))
    for extra in (["--tile", "64"], ["--precision", "bf16"], ["--max-tile-pixels", "5000"]):
        result = run(["apply", str(src), "-o", str(tmp_path / f"o{len(extra[1])}.png"), *extra], weights)
        assert result.exit_code == 0, result.output
    assert {Image.open(p).size for p in tmp_path.glob("o*.png")} == {(150, 90)}
