"""Folder runs: planning (globs, formats, skip/overwrite, shards) and the threaded pipeline."""

import threading

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from styler.config import ApplyConfig, FolderConfig, GeneratorConfig, OutputFormat
from styler.errors import ConfigError
from styler.inference.pipeline import apply_to_paths
from styler.inference.planning import parse_shard, plan_outputs, shard_from_env, split_existing, take_shard
from styler.inference.stylizer import Stylizer
from styler.nn import Generator
from tests.conftest import make_photo

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


def test_same_size_images_are_batched(tmp_path):
    s = stylizer()
    seen = []
    original = s.stylize_tensor
    s.stylize_tensor = lambda batch: (seen.append(batch.shape[0]), original(batch))[1]
    pairs = [(make_photo(tmp_path / f"a{i}.png", seed=i), tmp_path / "o" / f"a{i}.png") for i in range(6)]
    pairs.append((make_photo(tmp_path / "odd.png", size=(40, 30)), tmp_path / "o" / "odd.png"))
    summary = apply_to_paths(s, pairs, FolderConfig(batch_size=3, workers=2))
    assert len(summary.done) == 7 and not summary.failed
    assert sorted(seen) == [1, 3, 3]
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
        apply_to_paths(stylizer(), pairs, FolderConfig(batch_size=1, workers=1))
