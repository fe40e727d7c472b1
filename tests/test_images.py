import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from styler.errors import DataError, ImageError
from styler.io.images import find_images, load_rgb, load_style_image, pil_to_tensor, save_image, tensor_to_pil
from styler.training.data import ContentDataset, InfiniteSampler, collate_content
from tests.conftest import make_photo


def test_find_images_recursive_case_insensitive_sorted(photo_dir):
    (photo_dir / "notes.txt").write_text("x")
    found = find_images(photo_dir)
    assert [p.name for p in found] == ["p0.png", "p1.png", "p2.png", "p3.png", "p4.png", "q.JPG"]
    assert len(find_images(photo_dir, recursive=False)) == 5


def test_find_images_survives_symlink_loops(photo_dir):
    os.symlink(photo_dir, photo_dir / "nested" / "loop")
    assert len(find_images(photo_dir)) == 6


def test_find_images_missing_or_file(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        find_images(tmp_path / "nope")
    f = make_photo(tmp_path / "a.png")
    with pytest.raises(DataError, match="not a directory"):
        find_images(f)


@pytest.mark.parametrize("mode", ["L", "LA", "P", "CMYK", "RGBA", "I;16", "1"])
def test_any_mode_loads_as_rgb(tmp_path, mode):
    src = make_photo(tmp_path / "a.png", mode="RGB")
    image = Image.open(src)
    if mode == "I;16":
        import numpy as np

        image = Image.fromarray((np.asarray(image.convert("L")).astype(np.uint16) * 257))
        assert image.mode == "I;16"
    else:
        image = image.convert(mode)
    path = tmp_path / ("b.tif" if mode == "CMYK" else "b.png")
    image.save(path)
    rgb = load_rgb(path)
    assert rgb.mode == "RGB" and rgb.size == (80, 64)
    if mode == "I;16":
        assert pil_to_tensor(rgb).mean() > 0.1, "16-bit must not be clipped to black or white"


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), "red")
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    path = tmp_path / "rot.jpg"
    image.save(path, exif=exif.tobytes())
    assert load_rgb(path).size == (20, 40)


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_bad_files_raise_image_error_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.jpg"
    if content is None:  # truncated real JPEG
        make_photo(tmp_path / "good.jpg")
        content = (tmp_path / "good.jpg").read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(ImageError, match="bad.jpg"):
        load_rgb(path)


def test_tensor_round_trip_is_lossless():
    image = Image.new("RGB", (7, 5), (10, 200, 33))
    t = pil_to_tensor(image)
    assert t.shape == (3, 5, 7) and t.max() <= 1
    assert tensor_to_pil(t).tobytes() == image.tobytes()


def test_style_image_too_small(tmp_path):
    path = make_photo(tmp_path / "tiny.png", size=(8, 8))
    with pytest.raises(ImageError, match="at least 16"):
        load_style_image(path, 256)
    big = make_photo(tmp_path / "big.png", size=(300, 200))
    assert load_style_image(big, 150).shape == (1, 3, 100, 150)


def test_save_is_atomic_and_rejects_unknown_extension(tmp_path):
    image = Image.new("RGB", (4, 4))
    save_image(image, tmp_path / "sub" / "o.png")
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["o.png"]
    with pytest.raises(ImageError, match="unsupported output format"):
        save_image(image, tmp_path / "o.xyz")


def test_dataset_skips_unreadable_files_and_reports_them(photo_dir):
    bad = photo_dir / "broken.png"
    bad.write_bytes(b"junk")
    paths = find_images(photo_dir)
    ds = ContentDataset(paths, 32)
    index = paths.index(bad)
    image, failed = ds[index]
    assert image.shape == (3, 32, 32) and failed == [index]
    images, failures = collate_content([ds[index], ds[0]])
    assert images.shape == (2, 3, 32, 32) and failures == [index]


def test_dataset_with_only_unreadable_files(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(DataError, match="none of the 1"):
        ContentDataset([tmp_path / "a.png"], 32)[0]


def test_small_photos_are_upscaled_to_crop_size(tmp_path):
    ds = ContentDataset([make_photo(tmp_path / "s.png", size=(20, 12))], 32)
    assert ds[0][0].shape == (3, 32, 32)


def test_infinite_sampler_is_deterministic_and_resumable():
    full = InfiniteSampler(5, seed=3)
    it = iter(full)
    first = [next(it) for _ in range(12)]
    assert sorted(first[:5]) == list(range(5))
    resumed = iter(InfiniteSampler(5, seed=3, start=7))
    assert [next(resumed) for _ in range(5)] == first[7:12]


def test_luma_weights_are_written_once():
    """One place for BT.601's luma weights: every module that needs luma uses styler.io.images'."""
    package = Path(__file__).resolve().parent.parent / "styler"
    found = [path.relative_to(package).as_posix() for path in sorted(package.rglob("*.py"))
             for _ in range(path.read_text().count("0.587"))]
    assert found == ["io/images.py"]


def _process_umask() -> int | None:
    """The umask as Linux reports it, read without setting it (None where /proc does not say)."""
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.is_file() else []
    return next((int(line.split()[1], 8) for line in lines if line.startswith("Umask:")), None)


def test_concurrent_writers_never_lower_the_umask_or_create_world_writable_files(tmp_path):
    """The umask is process-wide: a writer that set it to 0 even for a moment would let the other
    writer threads create 0666 files and 0777 folders. Every line the writers run in
    styler.io.files is traced and the umask read there, so the race shows on every run."""
    import threading

    from styler.io import files

    umask = _process_umask()
    if umask is None:
        pytest.skip("needs Linux's /proc/self/status")
    seen: set[int | None] = set()

    def watch(frame, event, arg):
        seen.add(_process_umask())
        return watch

    def trace(frame, event, arg):
        return watch if frame.f_code.co_filename == files.__file__ else None

    def write(worker: int) -> None:
        for i in range(20):
            with files.atomic_path(tmp_path / f"w{worker}" / f"{i}.bin") as tmp, open(tmp, "wb") as fh:
                fh.write(b"x")

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    threading.settrace(trace)
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        threading.settrace(None)
    assert seen == {umask}
    assert {p.stat().st_mode & 0o777 for p in tmp_path.rglob("*.bin")} == {0o666 & ~umask}
    save_image(Image.new("RGB", (4, 4)), tmp_path / "o.png")  # not mkstemp's 0600
    assert (tmp_path / "o.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_photos_are_decoded_once_and_only_as_large_as_the_crops_need(tmp_path, monkeypatch):
    from styler.training import data

    photo = make_photo(tmp_path / "big.jpg", size=(800, 600))
    decoded = []

    def spy(path, before_decode=None):
        image = load_rgb(path, before_decode=before_decode)
        decoded.append(image.size)
        return image

    monkeypatch.setattr(data, "load_rgb", spy)
    dataset = ContentDataset([photo], 32)
    crops = [dataset[(0, position)][0] for position in range(4)]
    # A 32 px crop needs the photo's shorter side at 64 px: the JPEG decodes at 1/8 (100x75), once.
    assert decoded == [(100, 75)]
    assert all(crop.shape == (3, 32, 32) for crop in crops)
    assert not torch.equal(crops[0], crops[1])


def test_crops_do_not_depend_on_the_photo_cache(photo_dir):
    paths = find_images(photo_dir)
    cached, uncached = ContentDataset(paths, 32, seed=3), ContentDataset(paths, 32, seed=3, cache_bytes=0)
    for position in range(2 * len(paths)):  # the second pass reads the cache
        item = (position % len(paths), position)
        assert torch.equal(cached[item][0], uncached[item][0])
    assert cached._cache and not uncached._cache


def test_rotated_photos_are_cropped_upright(tmp_path):
    from styler.training.data import reduced_photo

    image = Image.new("RGB", (120, 80), (255, 0, 0))
    image.paste((0, 0, 255), (60, 0, 120, 80))  # stored: red left, blue right
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: red on top
    image.save(tmp_path / "turned.jpg", exif=exif.tobytes())
    upright = reduced_photo(tmp_path / "turned.jpg", 20)
    assert upright.size == (20, 30)
    top, bottom = upright.getpixel((10, 2)), upright.getpixel((10, 27))
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]
