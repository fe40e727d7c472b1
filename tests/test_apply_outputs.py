"""`styler apply`'s outputs: where they go (and that the summary says so), when a rerun redoes
one (the settings recorded in its mark), and the files a run cannot read (HEIC, camera raw)."""

import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from styler.cli import main
from styler.io.images import output_settings
from styler.io.weights import save_generator
from styler.nn import Generator
from tests.conftest import make_photo, one_line_error
from tests.media import TINY

try:  # the heif extra (in the test extra); the tests that need it are skipped without it
    import pillow_heif
except ImportError:
    pillow_heif = None


@pytest.fixture(autouse=True)
def demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    save_generator(tmp_path / "weights" / "demo.safetensors", Generator(TINY), {"style_name": "demo"})


def apply(*args, weights="weights"):
    return CliRunner().invoke(main, ["apply", *map(str, args), "--style", "demo", "--device", "cpu",
                                     "--weights-dir", str(weights)], catch_exceptions=False)


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB")).tolist()


def test_a_folder_run_names_its_output_folder_also_from_inside_the_folder(tmp_path, monkeypatch):
    make_photo(tmp_path / "holiday" / "a.jpg")
    make_photo(tmp_path / "holiday" / "b.jpg", seed=1)
    result = apply("holiday")
    assert result.exit_code == 0 and result.stdout.rstrip().endswith("; outputs in holiday_demo/"), result.output
    monkeypatch.chdir(tmp_path / "holiday")
    result = apply(".", "--overwrite", weights=tmp_path / "weights")
    assert result.exit_code == 0 and result.stdout.rstrip().endswith("; outputs in ../holiday_demo/"), result.output
    rerun = apply(".", weights=tmp_path / "weights")  # nothing to do: still says where the outputs are
    assert "skipped 2 existing" in rerun.stdout and rerun.stdout.rstrip().endswith("outputs in ../holiday_demo/")
    data = json.loads(apply(".", "--json", weights=tmp_path / "weights").stdout)
    assert data["output_folders"] == [str(tmp_path / "holiday_demo")]


def test_rerunning_one_photo_with_new_settings_writes_the_new_result(tmp_path):
    make_photo(tmp_path / "me.jpg")
    assert apply("me.jpg").stdout.startswith("wrote me_demo.jpg")
    first = pixels("me_demo.jpg")
    assert "strength 1" in output_settings(tmp_path / "me_demo.jpg")
    same = apply("me.jpg")  # the same work: skipped
    assert "skipped 1 existing" in same.stdout and pixels("me_demo.jpg") == first
    weaker = apply("me.jpg", "--strength", "0.5")
    assert weaker.stdout.startswith("wrote me_demo.jpg") and pixels("me_demo.jpg") != first
    assert "strength 0.5" in output_settings(tmp_path / "me_demo.jpg")


def test_an_explicit_output_is_written_again_but_never_a_file_styler_did_not_write(tmp_path):
    make_photo(tmp_path / "me.jpg")
    assert apply("me.jpg", "-o", "art.png").exit_code == 0
    again = apply("me.jpg", "-o", "art.png")  # named: the user asked for that file again
    assert again.exit_code == 0 and again.stdout.startswith("wrote art.png")
    make_photo(tmp_path / "mine.png", seed=3)
    before = (tmp_path / "mine.png").read_bytes()
    one_line_error(apply("me.jpg", "-o", "mine.png"), "-o mine.png exists and styler did not write it; "
                                                      "pass --overwrite to replace it")
    assert (tmp_path / "mine.png").read_bytes() == before
    assert apply("me.jpg", "-o", "mine.png", "--overwrite").exit_code == 0


def test_a_folder_rerun_redoes_what_other_settings_made_and_skips_the_rest(tmp_path):
    for i in range(3):
        make_photo(tmp_path / "in" / f"p{i}.png", seed=i)
    assert apply("in", "-o", "out/").exit_code == 0
    Image.open(tmp_path / "in" / "p0.png").save(tmp_path / "out" / "p0.png")  # a file not styler's
    data = json.loads(apply("in", "-o", "out/", "--json").stdout)
    assert data["done"] == 0 and data["skipped"] == 3
    data = json.loads(apply("in", "-o", "out/", "--preserve-color", "--json").stdout)
    assert data["done"] == 2 and data["skipped"] == 1  # styler's two are redone; the other is kept
    assert output_settings(tmp_path / "out" / "p0.png") is None


def test_outputs_marked_without_settings_are_kept(tmp_path):
    from styler.io.images import mark_output

    make_photo(tmp_path / "in" / "a.png")
    (tmp_path / "out").mkdir()
    Image.open(tmp_path / "in" / "a.png").save(tmp_path / "out" / "a.png", exif=mark_output(None))
    assert output_settings(tmp_path / "out" / "a.png") == ""
    assert "skipped 1 existing" in apply("in", "-o", "out/").stdout


def write_heic(path):
    if pillow_heif is None:
        pytest.skip("needs pillow-heif (pip install 'styler[heif]')")
    path.parent.mkdir(parents=True, exist_ok=True)
    pillow_heif.from_pillow(Image.open(make_photo(path.with_suffix(".src.png")))).save(path)
    path.with_suffix(".src.png").unlink()
    return path


def test_heic_photos_are_read_with_the_extra_and_written_as_jpeg(tmp_path, monkeypatch):
    import styler.io.images

    monkeypatch.setattr(styler.io.images, "_heif_registered", False)
    write_heic(tmp_path / "phone" / "IMG_1.HEIC")
    make_photo(tmp_path / "other" / "a.jpg")
    assert apply("other").exit_code == 0 and not styler.io.images._heif_registered  # no HEIC, not registered
    result = apply("phone", "-o", "out/")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / "IMG_1.jpg").size == (80, 64) and styler.io.images._heif_registered
    single = apply(tmp_path / "phone" / "IMG_1.HEIC")
    assert single.exit_code == 0 and (tmp_path / "phone" / "IMG_1_demo.jpg").is_file()


@pytest.fixture
def without_heif(monkeypatch):
    """As if pillow-heif were not installed: importing it fails, nothing is registered yet."""
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    monkeypatch.setattr("styler.io.images._heif_registered", False)


def test_unsupported_files_in_a_folder_are_counted_and_named(tmp_path, without_heif):
    make_photo(tmp_path / "holiday" / "a.jpg")
    write_heic(tmp_path / "holiday" / "IMG_1.HEIC")
    write_heic(tmp_path / "holiday" / "IMG_2.heic")
    (tmp_path / "holiday" / "raw.CR2").write_bytes(b"II*\x00" + bytes(64))
    (tmp_path / "holiday" / "notes.txt").write_text("not a photo, not a kind people stylize")
    result = apply("holiday")
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert "skipped 2 unsupported files: holiday/IMG_1.HEIC, holiday/IMG_2.heic (HEIC/HEIF images need " \
           "pillow-heif: pip install 'styler[heif]')" in lines
    assert "skipped 1 unsupported file: holiday/raw.CR2 (camera raw files are not read: export them as TIFF " \
           "or JPEG from a raw editor first)" in lines
    assert "notes.txt" not in result.output and result.stdout.startswith("wrote ")
    data = json.loads(apply("holiday", "--json").stdout)
    assert sorted(u["input"] for u in data["unsupported"]) == [str(tmp_path / "holiday" / n)
                                                                for n in ("IMG_1.HEIC", "IMG_2.heic", "raw.CR2")]


def test_a_single_heic_without_the_extra_blames_the_input_not_the_output(tmp_path, without_heif):
    write_heic(tmp_path / "IMG_1.HEIC")
    result = apply("IMG_1.HEIC")
    assert result.exit_code == 1 and "extension" not in result.output
    assert result.stderr.splitlines()[0] == "failed: IMG_1.HEIC: HEIC/HEIF images need pillow-heif: " \
                                            "pip install 'styler[heif]'"
    only = apply(tmp_path)  # nothing readable at all: one line that says why
    one_line_error(only, "no images found in the given inputs (found 1 it cannot read: HEIC/HEIF images need")


def test_an_output_without_extension_is_a_folder_for_a_folder_or_says_how(tmp_path):
    make_photo(tmp_path / "photos" / "a.jpg")
    result = apply("photos", "-o", "results")
    assert result.exit_code == 0 and (tmp_path / "results" / "a.jpg").is_file(), result.output
    one_line_error(apply("photos/a.jpg", "-o", "final"), "-o final is not an image or video file name; name "
                                                         "a file such as final.jpg, or a folder with a "
                                                         "trailing slash: final/")
    assert apply("photos/a.jpg", "-o", "final/").exit_code == 0 and (tmp_path / "final" / "a.jpg").is_file()
