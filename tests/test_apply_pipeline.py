"""Folder runs: planning (globs, formats, skip/overwrite, shards) and the threaded pipeline."""

import threading

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageCms

from styler.cli import main
from styler.config import ApplyConfig, FolderConfig, GeneratorConfig, OutputFormat
from styler.errors import ConfigError
from styler.inference.pipeline import apply_to_paths
from styler.inference.planning import parse_shard, plan_outputs, shard_from_env, split_existing, take_shard
from styler.inference.stylizer import Stylizer
from styler.io.weights import save_generator
from styler.nn import Generator
from styler.cli.apply import shown  # how the CLI prints a folder (relative when near the current one)
from tests.conftest import make_photo, one_line_error

TINY = GeneratorConfig(base_channels=4, num_residual=1)


def stylizer(seed: int = 0, **kwargs) -> Stylizer:
    torch.manual_seed(seed)
    g = Generator(TINY)
    with torch.no_grad():
        for p in g.head.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return Stylizer(g, config=ApplyConfig(**kwargs))


def test_glob_pattern_mirrors_tree_below_its_fixed_prefix(photo_dir, tmp_path):
    pairs, failed = plan_outputs([str(photo_dir / "**" / "*.JPG")], tmp_path / "out", "s")
    assert not failed and pairs == [(photo_dir / "nested" / "deeper" / "q.JPG",
                                     tmp_path / "out" / "nested" / "deeper" / "q.JPG")]
    pairs, _ = plan_outputs([str(photo_dir / "p*.png")], None, "s")
    assert len(pairs) == 5 and pairs[0][1] == photo_dir.parent / "photos_s" / "p0.png"
    pairs, failed = plan_outputs([str(photo_dir / "*.gif")], None, "s")
    assert not pairs and "no image files match" in failed[0][1]


def test_no_recursive_and_output_format(photo_dir, tmp_path):
    flat = FolderConfig(recursive=False, format=OutputFormat.WEBP)
    pairs, _ = plan_outputs([photo_dir], tmp_path / "o", "s", flat)
    assert len(pairs) == 5 and all(dst.suffix == ".webp" for _, dst in pairs)


def test_format_collisions_and_outputs_onto_inputs_are_refused(tmp_path):
    make_photo(tmp_path / "in" / "a.png"), make_photo(tmp_path / "in" / "a.jpg")  # same stem, two formats
    pairs, failed = plan_outputs([tmp_path / "in"], tmp_path / "o", "s", FolderConfig(format=OutputFormat.JPG))
    assert len(pairs) == 1 and "would also be written" in failed[0][1]
    pairs, failed = plan_outputs([tmp_path / "in"], tmp_path / "in", "s")
    assert not pairs and all("refusing to overwrite" in reason for _, reason in failed)


def test_skip_existing_and_overwrite(tmp_path):
    pairs = [(tmp_path / "a.png", tmp_path / "o1.png"), (tmp_path / "b.png", tmp_path / "o2.png")]
    (tmp_path / "o1.png").write_bytes(b"x")
    assert split_existing(pairs, overwrite=False) == ([pairs[1]], [pairs[0]])
    assert split_existing(pairs, overwrite=True) == (pairs, [])


def test_shards_partition_the_inputs_deterministically(tmp_path, monkeypatch):
    pairs = [(tmp_path / f"img{i}.png", tmp_path / "o" / f"img{i}.png") for i in range(40)]
    slices = [take_shard(pairs, (k, 3)) for k in range(3)]
    assert sorted(p for s in slices for p in s) == sorted(pairs) and all(slices)
    assert slices[1] == take_shard(list(reversed(pairs)), (1, 3))[::-1]
    assert take_shard(pairs, None) == pairs
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/3", "a/b", "1", "1/0"):
        with pytest.raises(ConfigError, match="K/N"):
            parse_shard(bad)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert shard_from_env() == (1, 2)
    monkeypatch.delenv("RANK")
    assert shard_from_env() is None


def test_same_size_images_are_batched_by_pixels(tmp_path):
    s = stylizer()
    seen = []
    original = s.stylize_tensor
    s.stylize_tensor = lambda batch: (seen.append(tuple(batch.shape)), original(batch))[1]
    pairs = [(make_photo(tmp_path / f"a{i}.png", seed=i), tmp_path / "o" / f"a{i}.png") for i in range(6)]
    pairs.append((make_photo(tmp_path / "odd.png", size=(40, 30)), tmp_path / "o" / "odd.png"))
    pairs += [(make_photo(tmp_path / f"big{i}.png", size=(160, 128), seed=i), tmp_path / "o" / f"big{i}.png")
              for i in range(2)]
    # 3 images of 80x64 fit 16,000 pixels; one of 160x128 (20,480) does not and goes alone.
    summary = apply_to_paths(s, pairs, FolderConfig(batch_pixels=16_000, workers=2))
    assert len(summary.done) == 9 and not summary.failed
    assert sorted(seen) == [(1, 3, 30, 40), (1, 3, 128, 160), (1, 3, 128, 160), (3, 3, 64, 80), (3, 3, 64, 80)]
    # Batched results equal one-by-one results (up to float rounding).
    single = np.asarray(stylizer()(Image.open(pairs[0][0])), np.int16)
    assert np.abs(np.asarray(Image.open(tmp_path / "o" / "a0.png"), np.int16) - single).max() <= 1


def test_exif_and_icc_profile_are_copied(tmp_path):
    image = Image.open(make_photo(tmp_path / "src.png"))
    exif = image.getexif()
    exif[0x010F] = "styler-test-camera"  # Make
    exif[0x0112] = 6  # rotated: the output must be upright and say so
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image.save(tmp_path / "in.jpg", exif=exif.tobytes(), icc_profile=icc)
    summary = apply_to_paths(stylizer(), [(tmp_path / "in.jpg", tmp_path / "out.jpg")])
    assert not summary.failed
    out = Image.open(tmp_path / "out.jpg")
    assert out.size == (64, 80) and out.info.get("icc_profile") == icc
    assert out.getexif()[0x010F] == "styler-test-camera" and out.getexif().get(0x0112, 1) == 1


def test_cmyk_profile_is_not_attached_to_rgb_output(tmp_path):
    Image.open(make_photo(tmp_path / "a.png")).convert("CMYK").save(tmp_path / "c.jpg", icc_profile=b"fake-cmyk")
    summary = apply_to_paths(stylizer(), [(tmp_path / "c.jpg", tmp_path / "o.jpg")])
    assert not summary.failed and "icc_profile" not in Image.open(tmp_path / "o.jpg").info


def test_palette_transparency_is_kept_as_alpha(tmp_path):
    image = Image.new("P", (20, 10), 1)
    image.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    image.paste(0, (0, 0, 10, 10))
    image.save(tmp_path / "p.png", transparency=0)
    apply_to_paths(stylizer(), [(tmp_path / "p.png", tmp_path / "o.png")])
    alpha = Image.open(tmp_path / "o.png").getchannel("A")
    assert alpha.getpixel((2, 2)) == 0 and alpha.getpixel((15, 5)) == 255


def test_two_runs_writing_the_same_outputs_do_not_corrupt_them(tmp_path):
    """Atomic writes: every reader sees one complete image, never a mix, and no temp file stays."""
    srcs = [make_photo(tmp_path / "in" / f"{i}.png", size=(96, 80), seed=i) for i in range(4)]
    pairs = [(src, tmp_path / "out" / src.name) for src in srcs]
    results, styles = {}, [stylizer(0), stylizer(1)]  # seeded here: the global RNG is not per thread
    threads = [threading.Thread(target=lambda s=s: results.setdefault(
        id(s), apply_to_paths(s, pairs, FolderConfig(overwrite=True)))) for s in styles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and all(not r.failed for r in results.values())
    for src in srcs:
        written = np.asarray(Image.open(tmp_path / "out" / src.name), np.int16)
        candidates = [np.asarray(s(Image.open(src)), np.int16) for s in styles]
        assert min(np.abs(written - c).max() for c in candidates) <= 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in srcs)


@pytest.mark.parametrize("stage", ["decode", "encode"])
def test_a_bug_in_a_worker_is_raised_not_swallowed(tmp_path, monkeypatch, stage):
    import styler.inference.pipeline

    def broken(*args, **kwargs):
        raise RuntimeError(f"bug in {stage}")

    monkeypatch.setattr(styler.inference.pipeline, stage, broken)
    pairs = [(make_photo(tmp_path / f"a{i}.png"), tmp_path / f"o{i}.png") for i in range(12)]
    with pytest.raises(RuntimeError, match=f"bug in {stage}"):  # and no hang with full queues
        apply_to_paths(stylizer(), pairs, FolderConfig(batch_pixels=1, workers=1))


def new_threads(before):
    """Threads started since ``before`` that are still alive a moment later."""
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=5)
    return [t for t in set(threading.enumerate()) - before if t.is_alive()]


@pytest.mark.parametrize("error", [RuntimeError("a bug"), KeyboardInterrupt()])
def test_no_thread_outlives_a_run_that_raised(tmp_path, monkeypatch, error):
    """A library user who catches the exception must not be left with blocked threads."""
    s = stylizer()
    calls = []

    def stylize(batch):
        calls.append(batch)
        if len(calls) == 2:
            raise error
        return batch

    monkeypatch.setattr(s, "stylize_tensor", stylize)
    pairs = [(make_photo(tmp_path / f"a{i}.png", seed=i), tmp_path / "o" / f"a{i}.png") for i in range(12)]
    before = set(threading.enumerate())
    with pytest.raises(type(error)):
        apply_to_paths(s, pairs, FolderConfig(batch_pixels=1, workers=2))
    assert new_threads(before) == []


def test_the_pixel_limit_is_restored_after_a_run(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 123_456_789)
    make_photo(tmp_path / "a.png", size=(100, 100))
    summary = apply_to_paths(stylizer(), [(tmp_path / "a.png", tmp_path / "o.png")], FolderConfig(max_pixels=6000))
    assert "max_pixels=10000" in summary.failed[0][1] and "--" not in summary.failed[0][1]
    assert Image.MAX_IMAGE_PIXELS == 123_456_789
    weights = tmp_path / "w"
    save_generator(weights / "demo.safetensors", Generator(TINY), {"style_name": "demo"})
    result = CliRunner().invoke(main, ["apply", str(tmp_path / "a.png"), "--style", "demo", "--weights-dir",
                                       str(weights), "--device", "cpu", "--max-pixels", "6000"])
    assert "raise the limit (--max-pixels 10000)" in result.stderr and Image.MAX_IMAGE_PIXELS == 123_456_789


def test_progress_moves_within_each_image_and_adds_up_to_the_count(tmp_path):
    shares = []
    pairs = [(make_photo(tmp_path / f"a{i}.png", seed=i), tmp_path / "o" / f"a{i}.png") for i in range(3)]
    pairs.append((tmp_path / "missing.png", tmp_path / "o" / "missing.png"))
    apply_to_paths(stylizer(), pairs, FolderConfig(batch_pixels=1), on_work=shares.append)
    assert len(shares) == 3 * 3 + 1 and sum(shares) == pytest.approx(4)
    one = []
    apply_to_paths(stylizer(), pairs[:1], FolderConfig(overwrite=True), on_work=one.append)
    assert one == [0.1, 0.8, 0.1]  # decoded, stylized, written: one photo shows progress too


def cpu_out_of_memory(batch):
    raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 35184372088832 bytes. Error code 12 (Cannot allocate memory)")


def test_out_of_memory_on_the_cpu_is_one_line_naming_tile_and_max_size(tmp_path, monkeypatch):
    weights = tmp_path / "w"
    save_generator(weights / "demo.safetensors", Generator(TINY), {"style_name": "demo"})
    make_photo(tmp_path / "a.png")
    monkeypatch.setattr(Stylizer, "stylize_tensor", lambda self, batch, network=None: cpu_out_of_memory(batch))
    result = CliRunner().invoke(main, ["apply", str(tmp_path / "a.png"), "--style", "demo", "--weights-dir",
                                       str(weights), "--device", "cpu"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.stderr.strip() == f"failed: {tmp_path / 'a.png'}: out of memory on cpu for 80x64 pixels; stylize " \
                                    f"it in tiles (--tile 1024) or at a smaller size (--max-size 64)"


def test_ctrl_c_says_how_many_were_written(tmp_path, monkeypatch):
    weights = tmp_path / "w"
    save_generator(weights / "demo.safetensors", Generator(TINY), {"style_name": "demo"})
    for i in range(5):
        make_photo(tmp_path / "in" / f"p{i}.png", seed=i)
    original, calls = Stylizer.stylize_tensor, []

    def interrupted_third(self, batch, network=None):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, batch, network)

    monkeypatch.setattr(Stylizer, "stylize_tensor", interrupted_third)
    result = CliRunner().invoke(main, ["apply", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--style",
                                       "demo", "--weights-dir", str(weights), "--device", "cpu",
                                       "--batch-pixels", "1", "-q"])
    written = len(list((tmp_path / "out").glob("*.png")))
    one_line_error(result, f"error: interrupted: wrote {written} of 5 files; outputs in {shown(tmp_path / 'out')}; "
                           f"the same command again does the rest")
    assert result.exit_code == 130 and written <= 2
