"""`styler ui`'s HTTP API on a real server (uvicorn on a free loopback port): the Try pictures,
upload limits, file names that try to become paths, the Styles part, the training queue, and
the command itself."""

from __future__ import annotations

import io
import json
import socket
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from styler.cli import main
from styler.config import DiscriminatorConfig, GeneratorConfig, UiConfig
from styler.io.weights import list_styles, read_info
from styler.training.runs import RunDir
from tests.conftest import one_line_error

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from styler.ui.app import create_app  # noqa: E402  (after the skips: it needs the extra)
from styler.ui.server import background  # noqa: E402

# Every job trains a tiny network on 32 px crops: a step takes milliseconds.
TINY_TRAINING = {"image_size": 32, "style_size": 64, "batch_size": 2, "checkpoint_every": 1000,
                 "generator": GeneratorConfig(base_channels=4, num_residual=1),
                 "discriminator": DiscriminatorConfig(base_channels=8)}
LIMIT = 300_000  # bytes per upload in these tests


def png_bytes(size=(80, 64), seed=0) -> bytes:
    buffer = io.BytesIO()
    noise = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "PNG")
    return buffer.getvalue()


def bomb_png(side=60_000) -> bytes:
    """A PNG whose header claims side x side pixels (3.6 billion), with almost no data: Pillow's
    decompression-bomb check must refuse it before decoding anything."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    data = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + data


def files_under(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def ui(tmp_path, weights):
    """(client, tmp_path): a server over the ``demo`` style (and the bundled ones), runs in tmp_path/runs."""
    app = create_app(weights, "cpu", UiConfig(max_upload_bytes=LIMIT), runs_root=tmp_path / "runs",
                     train_overrides=TINY_TRAINING)
    with background(app) as url, httpx.Client(base_url=url, timeout=120, headers={"X-Styler": "1"}) as client:
        yield client


def upload(client, data: bytes, name="photo.png", path="/api/photos"):
    return client.post(path, content=data, headers={"X-Filename": name})


def refused(response, status: int, fragment: str) -> None:
    """A 4xx answer with one line naming the problem."""
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert fragment in message and "\n" not in message and "Traceback" not in message, message


def wait_for(client, job_id, states, min_step=0, timeout=300.0) -> dict:
    # A generous limit: a CI machine running other jobs may give a tiny run little CPU.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = next(j for j in client.get("/api/jobs").json()["jobs"] if j["id"] == job_id)
        if job["state"] in states and job["step"] >= min_step:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} still {job['state']}, wanted {states}")


def test_page_and_its_files(ui):
    page = ui.get("/")
    assert page.status_code == 200 and 'data-tab="train"' in page.text and "/static/app.js" in page.text
    assert ui.get("/static/app.js").status_code == 200 and ui.get("/static/app.css").status_code == 200
    for path in ("/static/..%2Fapp.py", "/static/app.py", "/static/%2e%2e/__init__.py"):
        assert ui.get(path).status_code == 404, path
    info = ui.get("/api/info").json()
    assert info["max_upload_bytes"] == LIMIT and "random" in info["features"]


def test_a_photo_comes_back_in_every_style(ui, weights):
    answer = upload(ui, png_bytes((80, 64)), "holiday.png")
    assert answer.status_code == 200, answer.text
    photo = answer.json()
    usable = [s.name for s in list_styles(weights) if s.error is None and not s.shadowed]
    assert [c["style"] for c in photo["cells"]] == usable and "demo" in usable and photo["size"] == [80, 64]
    for cell in photo["cells"]:
        assert cell["src"].startswith("data:image/jpeg;base64,")

    def render(**params):
        response = ui.get(f"/api/photos/{photo['id']}/render", params={"style": "demo", **params})
        assert response.status_code == 200, response.text
        return response

    def pixels(response):
        return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=np.int16)

    original = pixels(ui.get(f"/api/photos/{photo['id']}/original"))
    assert np.abs(pixels(render(strength="0")) - original).max() <= 3  # both JPEG, of the same pixels
    styled = pixels(render())
    for other in (render(strength="0.5"), render(stroke_scale="2"), render(preserve_color="1")):
        assert np.abs(pixels(other) - styled).mean() > 1
    full = render(full="1")
    assert full.headers["content-type"] == "image/png"
    assert full.headers["content-disposition"] == 'attachment; filename="holiday_demo.png"'
    assert Image.open(io.BytesIO(full.content)).size == (80, 64)
    refused(ui.get(f"/api/photos/{photo['id']}/render", params={"style": "demo", "strength": "2"}), 400,
            "strength must be between 0 and 1")
    refused(ui.get(f"/api/photos/{photo['id']}/render", params={"style": "nope"}), 404, "no style named 'nope'")
    refused(ui.get("/api/photos/0123/render", params={"style": "demo"}), 404, "no longer on the server")

    archive = zipfile.ZipFile(io.BytesIO(ui.get("/api/zip", params={"photo": photo["id"]}).content))
    assert sorted(archive.namelist()) == sorted(f"01_holiday_{name}.png" for name in usable)


def test_bad_uploads_are_one_line_and_write_nothing(ui, tmp_path, monkeypatch):
    before = files_under(tmp_path)
    refused(upload(ui, b"just some text", "notes.jpg"), 400, "notes.jpg: not an image Pillow can read")
    refused(upload(ui, png_bytes()[:200], "cut.png"), 400, "cut.png: cannot decode image")
    refused(upload(ui, bomb_png(), "bomb.png"), 400, "bomb.png: image is too large")
    refused(upload(ui, b"\0" * (LIMIT + 1), "big.png"), 413, "larger than the limit")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # what styler ui --max-pixels 1000 sets
    refused(upload(ui, png_bytes((40, 40)), "wide.png"), 400, "wide.png: image is too large")
    assert upload(ui, png_bytes((20, 20)), "small.png").status_code == 200  # the server kept running
    assert files_under(tmp_path) == before


def test_file_names_from_the_browser_never_become_paths(ui, tmp_path, weights):
    sneaky = upload(ui, png_bytes(), "..%2F..%2F..%2Fevil.png", path="/api/uploads").json()
    assert sneaky["label"] == "evil.png"
    photo = upload(ui, png_bytes(), "..%2F..%2Fx%22y.png").json()
    full = ui.get(f"/api/photos/{photo['id']}/render", params={"style": "demo", "full": "1"})
    assert full.headers["content-disposition"] == 'attachment; filename="x_y_demo.png"'
    for name in ("../x", "..", "a/b", ".hidden", "x" * 65, ""):
        refused(ui.post("/api/train", json={"name": name, "painting": sneaky["id"], "photos": [sneaky["id"]],
                                            "steps": 1, "features": "random"}), 400, "is not allowed")
    refused(ui.post("/api/styles/demo/rename", json={"to": "../evil"}), 400, "is not allowed")
    assert ui.post("/api/styles/..%2Fweights%2Fdemo/delete").status_code == 404  # no route matches
    refused(ui.post("/api/styles/..demo/delete"), 400, "no style of yours")
    assert ui.get("/api/styles/..%2F..%2Fetc%2Fpasswd/painting").status_code == 404
    job = ui.post("/api/train", json={"name": "sneaky", "painting": sneaky["id"], "photos": [sneaky["id"]] * 6,
                                      "steps": 2, "features": "random"}).json()
    wait_for(ui, job["id"], ("finished",))
    written = [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if "inputs" in p.parts and p.is_file()]
    assert len(written) == 7 and all(p.startswith("runs/sneaky/inputs/") for p in written)
    assert sorted(p.rsplit("/", 1)[1] for p in written) == ["0000.png", "0001.png", "0002.png", "0003.png",
                                                              "0004.png", "0005.png", "painting.png"]
    assert not [p for p in tmp_path.parent.rglob("evil*")]


def test_other_web_sites_cannot_make_changes(ui, weights):
    """A page of another site in the same browser can send requests to 127.0.0.1: a POST without
    the page's own header, or a request under another Host name (DNS rebinding), is refused."""
    refused(ui.post("/api/styles/demo/delete", headers={"X-Styler": "0"}), 403, "needs the x-styler header")
    refused(ui.get("/api/styles", headers={"Host": "evil.example:7860"}), 403, "answers only to")
    assert (weights / "demo.safetensors").is_file()
    for host in ("localhost:80", "127.0.0.1:1", "[::1]:7860"):
        assert ui.get("/api/styles", headers={"Host": host}).status_code == 200, host


def test_styles_rename_and_delete_yours_never_bundled(ui, weights):
    rows = {row["name"]: row for row in ui.get("/api/styles").json()["styles"]}
    assert not rows["demo"]["bundled"] and rows["starry"]["bundled"] and rows["starry"]["steps"]
    assert ui.get("/api/styles/demo/painting").status_code == 404  # an untrained file names no painting
    painting = ui.get("/api/styles/starry/painting")  # samples/styles/starry_night.jpg, matched by its hash
    assert painting.status_code == 200 and max(Image.open(io.BytesIO(painting.content)).size) == 160
    refused(ui.post("/api/styles/starry/delete"), 400, "bundled styles cannot be renamed or deleted")
    refused(ui.post("/api/styles/starry/rename", json={"to": "mine"}), 400, "bundled styles cannot")
    refused(ui.post("/api/styles/demo/rename", json={"to": "starry"}), 400, "'starry' is already a bundled style")
    refused(ui.post("/api/styles/demo/rename", json={}), 400, "is not allowed")
    renamed = ui.post("/api/styles/demo/rename", json={"to": "holiday"})
    assert renamed.status_code == 200 and "holiday" in [r["name"] for r in renamed.json()["styles"]]
    assert not (weights / "demo.safetensors").exists() and read_info(weights / "holiday.safetensors").name == "holiday"
    refused(ui.post("/api/styles/demo/delete"), 400, "no style of yours named 'demo'")
    assert "holiday" not in [r["name"] for r in ui.post("/api/styles/holiday/delete").json()["styles"]]
    assert not list(weights.glob("*.safetensors"))
    refused(ui.post("/api/styles/holiday/explode"), 404, "not found")


def test_styles_in_dot_weights_are_only_read(ui, weights, tmp_path, monkeypatch):
    here = tmp_path / "elsewhere"
    (here / "weights").mkdir(parents=True)
    (here / "weights" / "local.safetensors").write_bytes((weights / "demo.safetensors").read_bytes())
    monkeypatch.chdir(here)  # ./weights: read, listed, never changed
    rows = {row["name"]: row for row in ui.get("/api/styles").json()["styles"]}
    assert rows["local"]["source"] == "./weights" and rows["demo"]["source"] == "yours"
    refused(ui.post("/api/styles/local/delete"), 400, "'local' is in ./weights, which styler only reads")
    refused(ui.post("/api/styles/demo/rename", json={"to": "local"}), 400, "'local' is already a style in ./weights")
    assert (here / "weights" / "local.safetensors").is_file()


def test_training_from_a_folder_that_is_only_read(ui, tmp_path, photo_dir, style_image):
    painting = upload(ui, style_image.read_bytes(), "starry.png", "/api/uploads").json()["id"]
    form = {"name": "folder-style", "painting": painting, "steps": 3, "features": "random"}
    refused(ui.post("/api/train", json={**form, "folder": str(tmp_path / "nowhere")}), 400, "no such folder")
    refused(ui.post("/api/train", json={**form, "folder": str(style_image)}), 400, "no such folder")
    refused(ui.post("/api/train", json=form), 400, "give the photos to train on")
    refused(ui.post("/api/train", json={**form, "folder": str(photo_dir), "photos": [painting]}), 400, "not both")
    refused(ui.post("/api/train", json={**form, "folder": str(photo_dir), "painting": "gone"}), 400, "no painting")
    refused(ui.post("/api/train", json={**form, "folder": str(photo_dir), "steps": "0"}), 400, "steps must be")
    refused(ui.post("/api/train", json={**form, "folder": str(photo_dir), "budget": 60}), 400, "one of them")
    refused(ui.post("/api/train", json={**form, "folder": str(photo_dir), "steps": None}), 400, "one of them")
    for budget in ("soon", -5, 10**9, "nan"):
        refused(ui.post("/api/train", json={**form, "folder": str(photo_dir), "steps": None, "budget": budget}), 400,
                "budget must be a number of seconds")
    refused(ui.post("/api/train", json={**form, "folder": str(photo_dir), "features": "x"}), 400, "features must be")
    refused(ui.post("/api/train", json={**form, "name": "demo", "folder": str(photo_dir)}), 400,
            "already one of your styles")
    refused(ui.post("/api/train", content=b"{not json"), 400, "not JSON")
    assert not (tmp_path / "runs").exists()  # refused forms write nothing
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in photo_dir.rglob("*")  if p.is_file()}
    job = ui.post("/api/train", json={**form, "folder": str(photo_dir)}).json()
    done = wait_for(ui, job["id"], ("finished", "failed"))
    assert done["state"] == "finished" and done["step"] == 3 and len(done["losses"]) == 3, done
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in photo_dir.rglob("*") if p.is_file()} == before
    assert "folder-style" in [r["name"] for r in ui.get("/api/styles").json()["styles"]]
    assert ui.get("/api/styles/folder-style/painting").status_code == 200  # found through its run folder
    assert ui.get(f"/api/jobs/{job['id']}/preview").headers["content-type"] == "image/png"
    refused(ui.get("/api/jobs/nope/preview"), 404, "no such training job")


def test_one_job_at_a_time_the_rest_wait_in_order(ui, tmp_path, photo_dir, style_image, weights):
    painting = upload(ui, style_image.read_bytes(), "p.png", "/api/uploads").json()["id"]

    def submit(name, **length):
        response = ui.post("/api/train", json={"name": name, "painting": painting, "folder": str(photo_dir),
                                               "features": "random", **length})
        assert response.status_code == 200, response.text
        return response.json()

    long = submit("long", budget=3600)  # an hour: the trainer plans its steps
    running = wait_for(ui, long["id"], ("running",), min_step=2)
    refused(ui.post("/api/train", json={"name": "long", "painting": painting, "folder": str(photo_dir),
                                        "steps": 2, "features": "random"}), 400, "already waiting or running")
    second, third = submit("second", steps=2), submit("third", steps=2)
    assert (second["state"], second["ahead"], third["state"], third["ahead"]) == ("queued", 1, "queued", 2)
    planned = RunDir(tmp_path / "runs" / "long").read_spec()
    assert running["budget"] == 3600 and running["steps"] == planned.config.steps == planned.plan["steps"]
    assert 0 < running["eta"] <= 3600  # counts down to the budget's deadline
    assert ui.post(f"/api/jobs/{third['id']}/stop").status_code == 200
    assert wait_for(ui, third["id"], ("cancelled",))["step"] == 0
    wait_for(ui, long["id"], ("running",))
    assert next(j for j in ui.get("/api/jobs").json()["jobs"] if j["id"] == second["id"])["state"] == "queued"
    ui.post(f"/api/jobs/{long['id']}/stop")
    stopped = wait_for(ui, long["id"], ("stopped",))
    saved = read_info(weights / "long.safetensors").metadata
    assert 1 <= stopped["step"] < planned.config.steps and saved["steps_trained"] == stopped["step"]
    assert stopped["best"][0] <= stopped["step"]  # the generator kept, validated up to the step Stop ended
    assert wait_for(ui, second["id"], ("finished",))["step"] == 2
    assert (weights / "second.safetensors").is_file() and not (weights / "third.safetensors").exists()
    short = wait_for(ui, submit("short", budget=0.01)["id"], ("failed",))
    assert short["error"].startswith("a budget of 0 s is shorter than setup plus one step here")


def test_ui_command_help_missing_extra_and_taken_port(monkeypatch, tmp_path):
    def ui_command(*args):
        return CliRunner().invoke(main, ["ui", "--no-browser", "--weights-dir", str(tmp_path), *args])

    result = CliRunner().invoke(main, ["ui", "--help"])
    assert result.exit_code == 0 and "--no-browser" in result.output and "--max-pixels" in result.output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        one_line_error(ui_command("--port", str(port)), "cannot listen on")
        result = ui_command("--host", "0.0.0.0", "--port", str(port))
        lines = result.stderr.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 2, result.output
        assert lines[0].startswith("warning: --host 0.0.0.0 lets anyone") and lines[1].startswith("error: cannot")
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the extra were not installed
    one_line_error(ui_command(), "the web page needs: pip install 'styler[ui]'")


def test_ui_command_serves_until_ctrl_c(tmp_path):
    command = [sys.executable, "-m", "styler", "ui", "--port", "0", "--no-browser", "--json", "--device", "cpu",
               "--max-pixels", "1000", "--weights-dir", str(tmp_path / "weights")]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        url = json.loads(server.stdout.readline())["url"]
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=60, headers={"X-Styler": "1"}) as client:
            refused(upload(client, png_bytes((40, 40)), "big.png", "/api/uploads"), 400, "image is too large")
            assert upload(client, png_bytes((20, 20)), "ok.png", "/api/uploads").status_code == 200
        server.send_signal(2)  # Ctrl-C
        assert server.wait(timeout=180) == 0  # a loaded machine takes its time to shut a torch process down
        assert server.stderr.read().strip().splitlines()[-1] == "stopped"
    finally:
        server.kill()
        server.wait()
