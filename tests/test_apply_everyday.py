"""`styler apply` and `export` in everyday use: reruns, -o file or folder, unsupported inputs."""

import json

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from styler.cli import main
from styler.config import GeneratorConfig
from styler.io.images import is_styler_output
from styler.io.weights import save_generator
from styler.nn import Generator
from tests.conftest import make_photo

TINY = GeneratorConfig(base_channels=4, num_residual=1)


@pytest.fixture(autouse=True)
def demo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    save_generator(tmp_path / "weights" / "demo.safetensors", Generator(TINY), {"style_name": "demo"})


def apply(*args):
    return CliRunner().invoke(main, ["apply", *map(str, args), "--style", "demo", "--device", "cpu"],
                              catch_exceptions=False)


def one_line_error(result, fragment):
    assert result.exit_code != 0 and "Traceback" not in result.output
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error: ") and fragment in line, result.output


def files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_output_folder_inside_the_input_folder_is_not_an_input_next_time(tmp_path):
    make_photo(tmp_path / "t2" / "a.jpg")
    make_photo(tmp_path / "t2" / "b.png", seed=1)
    first = apply("t2", "-o", "t2/out/")
    assert first.exit_code == 0, first.output
    second = apply("t2", "-o", "t2/out/")
    assert second.exit_code == 0, second.output
    assert "skipped 2 existing" in second.stdout
    assert files(tmp_path / "t2") == ["a.jpg", "b.png", "out/a.jpg", "out/b.png"]


def test_files_styler_wrote_beside_inputs_are_not_picked_up_by_a_folder_run(tmp_path):
    make_photo(tmp_path / "multi" / "a" / "a.jpg")
    assert apply("multi/a/a.jpg").exit_code == 0
    assert is_styler_output(tmp_path / "multi" / "a" / "a_demo.jpg")
    assert not is_styler_output(tmp_path / "multi" / "a" / "a.jpg")
    result = apply("multi/a", "--json")
    assert result.exit_code == 0, result.output
    assert files(tmp_path / "multi" / "a_demo") == ["a.jpg"]


def test_trailing_slash_means_a_folder_for_one_input(tmp_path):
    make_photo(tmp_path / "a.jpg")
    result = apply("a.jpg", "-o", "new/")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "a.jpg").is_file()


def test_several_inputs_with_an_image_file_output_are_refused_up_front(tmp_path):
    make_photo(tmp_path / "a.jpg")
    make_photo(tmp_path / "b.jpg", seed=1)
    one_line_error(apply("a.jpg", "b.jpg", "-o", "out.png"), "-o out.png names one image but the inputs are several")
    assert not (tmp_path / "out.png").exists()


def test_an_existing_file_as_the_output_folder_fails_before_decoding(tmp_path, monkeypatch):
    make_photo(tmp_path / "photos" / "a.jpg")
    (tmp_path / "taken").write_text("x")
    decoded = []
    monkeypatch.setattr("styler.inference.pipeline.open_image", lambda path: decoded.append(path))
    one_line_error(apply("photos", "-o", "taken"), "-o taken: is a file")
    one_line_error(apply("photos", "-o", "taken/sub/"), "is a file, not a folder")
    assert decoded == []


def test_an_unwritable_output_folder_fails_before_decoding(tmp_path, monkeypatch):
    import os

    make_photo(tmp_path / "photos" / "a.jpg")
    (tmp_path / "ro").mkdir()
    real_access = os.access  # tests may run as root
    monkeypatch.setattr("styler.io.files.os.access", lambda p, mode: not str(p).endswith("ro") and real_access(p, mode))
    decoded = []
    monkeypatch.setattr("styler.inference.pipeline.open_image", lambda path: decoded.append(path))
    one_line_error(apply("photos", "-o", "ro/out/"), "ro is not writable")
    assert decoded == []


def test_unsupported_inputs_are_named_as_such(tmp_path):
    (tmp_path / "notes.docx").write_bytes(b"PK\x03\x04" + b"\x00" * 64)
    result = apply("notes.docx")
    assert result.exit_code == 1
    assert "failed: notes.docx: not a supported image or video (jpg, jpeg, png" in result.stderr
    assert "mp4" in result.stderr and "extension" not in result.stderr


def gif(path, frames):
    images = [Image.new("RGB", (24, 16), colour) for colour in ("red", "blue", "green")[:frames]]
    images[0].save(path, save_all=frames > 1, append_images=images[1:], duration=100)
    return path


def test_gifs_in_folders_still_ones_are_images_animated_ones_keep_their_frames(tmp_path):
    (tmp_path / "g").mkdir()
    gif(tmp_path / "g" / "still.gif", 1)
    gif(tmp_path / "g" / "moving.gif", 3)
    result = apply("g", "-o", "out/")
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "out" / "still.png").size == (24, 16)  # GIF's palette would band: PNG
    with Image.open(tmp_path / "out" / "moving.gif") as moving:  # never cut to one frame
        assert moving.n_frames == 3 and moving.size == (24, 16)


def test_export_into_a_folder_and_no_silent_overwrite(tmp_path):
    def export(*args):
        return CliRunner().invoke(main, ["export", "demo", "--format", "torchscript", *map(str, args)],
                                  catch_exceptions=False)

    result = export("-o", "models/", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["output"] == str(tmp_path / "models" / "demo.pt")
    before = (tmp_path / "models" / "demo.pt").read_bytes()
    one_line_error(export("-o", "models/"), "already exists; pass --overwrite")
    one_line_error(export("-o", "models/demo.pt"), "already exists; pass --overwrite")
    assert export("-o", "models", "--overwrite").exit_code == 0
    assert (tmp_path / "models" / "demo.pt").read_bytes() != b"" and before


def test_json_pairs_inputs_with_outputs_in_absolute_paths(tmp_path):
    make_photo(tmp_path / "in" / "a.jpg")
    make_photo(tmp_path / "in" / "b.jpg", seed=1)
    data = json.loads(apply("in", "-o", "out/", "--json").stdout)
    assert data["outputs"] == [{"input": str(tmp_path / "in" / n), "output": str(tmp_path / "out" / n)}
                               for n in ("a.jpg", "b.jpg")]
    data = json.loads(apply("in", "-o", "out/", "--json").stdout)
    assert data["skipped_outputs"][0] == {"input": str(tmp_path / "in" / "a.jpg"),
                                          "output": str(tmp_path / "out" / "a.jpg")}


@pytest.mark.parametrize("command, message", [(["apply", "a.jpg", "--style", "nope"], "no style named 'nope'"),
                                              (["export", "nope"], "no style named 'nope'"),
                                              (["sheet", "missing.png"], "missing.png: no such file")])
def test_json_fatal_error_is_still_a_json_object(tmp_path, command, message):
    make_photo(tmp_path / "a.jpg")
    result = CliRunner().invoke(main, [*command, "--json"])
    assert result.exit_code == 1 and result.stderr.startswith(f"error: {message}")
    data = json.loads(result.stdout)
    assert data["error"].startswith(message) and data["exit_code"] == 1


def test_json_usage_error_inside_the_command(tmp_path):
    result = CliRunner().invoke(main, ["train", "--json"])
    assert result.exit_code == 2 and "--style and --content-dir are required" in json.loads(result.stdout)["error"]


@pytest.mark.parametrize("fmt", ["JPG", "jpeg", "JPEG", "Png"])
def test_format_accepts_any_case_and_jpeg(tmp_path, fmt):
    make_photo(tmp_path / "in" / "a.png")
    result = apply("in", "-o", "out/", "--format", fmt)
    assert result.exit_code == 0, result.output
    suffix = ".png" if fmt.lower() == "png" else ".jpg"
    assert (tmp_path / "out" / f"a{suffix}").is_file()


def test_style_given_twice_is_an_error(tmp_path):
    make_photo(tmp_path / "a.jpg")
    result = CliRunner().invoke(main, ["apply", "a.jpg", "--style", "demo", "--style", "other"])
    assert result.exit_code == 2 and "given 2 times (demo, other); give it once" in result.stderr


def test_one_image_summary_has_no_meaningless_rate(tmp_path):
    make_photo(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "bad.png").write_bytes(b"junk")
    result = apply("in", "-o", "out/")
    assert result.exit_code == 1
    assert "images/s" not in result.stdout and result.stdout.startswith("done 1, failed 1")


def test_an_empty_shard_exits_0_having_done_nothing(tmp_path):
    make_photo(tmp_path / "in" / "only.png")
    results = [apply("in", "-o", "out/", "--shard", f"{k}/2", "--json") for k in range(2)]
    assert [r.exit_code for r in results] == [0, 0], [r.output for r in results]
    assert sorted(json.loads(r.stdout)["done"] for r in results) == [0, 1]


def test_shards_agree_across_mount_points(tmp_path):
    from styler.inference.planning import plan_outputs, take_shard

    names = [f"d{i % 3}/p{i}.png" for i in range(12)]
    slices = []
    for mount in ("mnt/a/data", "other/place/data"):
        for name in names:
            make_photo(tmp_path / mount / name, size=(8, 8))
        pairs, _ = plan_outputs([tmp_path / mount], tmp_path / "out", "demo")
        slices.append([[p[0].relative_to(tmp_path / mount).as_posix() for p in
                        take_shard(pairs, (k, 3), [tmp_path / mount])] for k in range(3)])
    assert slices[0] == slices[1] and sorted(sum(slices[0], [])) == sorted(names)


def test_export_to_an_unwritable_path_and_exporter_failures_are_one_line(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(main, ["export", "demo", "--format", "torchscript", "-o", "file/demo.pt"])
    one_line_error(result, "file/demo.pt: cannot write")

    def broken(scripted, target, opset):
        raise RuntimeError("Unsupported: ONNX export of operator foo\n  with a long explanation")

    monkeypatch.setattr("styler.inference.export._export_onnx", broken)
    result = CliRunner().invoke(main, ["export", "demo", "-o", "x.onnx"])
    one_line_error(result, "exporting to x.onnx failed: RuntimeError: Unsupported: ONNX export of operator foo")
    assert not (tmp_path / "x.onnx").exists() and not list(tmp_path.glob(".x.onnx*"))


def test_quiet_after_the_subcommand(tmp_path):
    make_photo(tmp_path / "a.jpg")
    result = apply("a.jpg", "-q")
    assert result.exit_code == 0 and result.output == "" and (tmp_path / "a_demo.jpg").is_file()
    assert apply("a.jpg", "--overwrite").stdout.startswith("wrote ")  # -q does not stick to the next run


def test_max_size_scales_a_huge_photo_down_instead_of_refusing_it(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    for name in ("big.jpg", "big.png"):
        make_photo(tmp_path / name, size=(400, 300))  # 120,000 pixels: 12x the limit
    refused = apply("big.jpg", "-o", "r.jpg")
    assert refused.exit_code == 1 and "--max-size" in refused.stderr and "--max-pixels" in refused.stderr
    for name in ("big.jpg", "big.png"):
        result = apply(name, "--max-size", 64, "-o", f"small_{name}")
        assert result.exit_code == 0, result.output
        assert Image.open(tmp_path / f"small_{name}").size == (64, 48)
    one = apply("big.png", "--max-size", 200, "-o", "still.png")  # 200x150 work is over the limit too
    assert one.exit_code == 1 and "too large" in one.stderr
