"""``styler apply --engine ray``'s bad inputs, each one line and no traceback. None of these needs
a cluster: each is found before one is started (or instead of reaching one)."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading

import pytest
from click.testing import CliRunner

from styler.cli import main
from styler.config import ApplyConfig
from styler.errors import ConfigError
from styler.cli.apply import shown  # how the CLI prints a folder (relative when near the current one)
from tests.conftest import make_photo, one_line_error

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


@pytest.fixture(autouse=True)
def no_connection():
    """A connection left by another test would be reused instead of the address under test."""
    assert not ray.is_initialized()
    yield
    assert not ray.is_initialized()


def apply(tmp_path, *args, weights=None):
    make_photo(tmp_path / "photos" / "a.png")
    style = ["--style", "demo", "--weights-dir", str(weights)] if weights else []
    return CliRunner().invoke(main, ["apply", str(tmp_path / "photos"), "-o", str(tmp_path / "out"), *style,
                                     *map(str, args)])


def test_without_the_extra_one_line_names_it(tmp_path, weights, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    one_line_error(apply(tmp_path, "--engine", "ray", weights=weights), "pip install 'styler[ray]'")


def test_an_address_nobody_answers_at_is_one_line(tmp_path, weights):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = apply(tmp_path, "--engine", "ray", "--ray-address", f"127.0.0.1:{port}", weights=weights)
    one_line_error(result, f"no Ray cluster answers at 127.0.0.1:{port}")
    assert not (tmp_path / "out").exists()


def test_an_address_that_answers_but_is_no_ray_cluster_is_one_line(tmp_path, weights):
    """Ray would retry such an address for many minutes; the check before it takes milliseconds."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def hang_up() -> None:
        with contextlib.suppress(OSError):
            while True:
                server.accept()[0].close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        result = apply(tmp_path, "--engine", "ray", "--ray-address", f"127.0.0.1:{port}", weights=weights)
    finally:
        server.close()
    one_line_error(result, f"127.0.0.1:{port} answers, but not as a Ray cluster does")


def test_an_unknown_style_says_what_a_local_run_says(tmp_path, weights):
    local = apply(tmp_path, "--style", "nope", weights=None)
    remote = apply(tmp_path, "--style", "nope", "--engine", "ray")
    one_line_error(local, "no style named 'nope'")
    one_line_error(remote, "no style named 'nope'")
    assert remote.stderr == local.stderr


def test_a_tile_that_does_not_fit_the_style_says_what_a_local_run_says(tmp_path, weights):
    """Checked against the style's file header before a cluster is reached."""
    local = apply(tmp_path, "--tile", "66", weights=weights)
    remote = apply(tmp_path, "--tile", "66", "--engine", "ray", weights=weights)
    one_line_error(local, "--tile 66 does not fit style 'demo'")
    assert remote.stderr == local.stderr


def test_a_rerun_with_nothing_left_to_do_needs_no_cluster_and_says_where_the_outputs_are(tmp_path, weights):
    assert apply(tmp_path, weights=weights).exit_code == 0
    again = apply(tmp_path, "--engine", "ray", weights=weights)
    assert again.exit_code == 0 and "skipped 1 existing" in again.stdout
    assert again.stdout.rstrip().endswith(f"; outputs in {shown(tmp_path / 'out')}")
    other = apply(tmp_path, "--engine", "ray", "--ray-address", "127.0.0.1:1", "--strength", "0.5", weights=weights)
    one_line_error(other, "no Ray cluster answers at 127.0.0.1:1")  # other settings: the output is redone


def test_an_unwritable_output_folder_is_one_line(tmp_path, weights, monkeypatch):
    import os

    make_photo(tmp_path / "photos" / "a.png")
    (tmp_path / "ro").mkdir()
    real_access = os.access  # tests may run as root
    monkeypatch.setattr("styler.io.files.os.access", lambda p, mode: not str(p).endswith("ro") and real_access(p, mode))
    result = CliRunner().invoke(main, ["apply", str(tmp_path / "photos"), "-o", str(tmp_path / "ro" / "out"),
                                       "--style", "demo", "--weights-dir", str(weights), "--engine", "ray"])
    one_line_error(result, "ro is not writable")


def test_a_worker_checks_it_can_write_the_output_folders(tmp_path, weights, monkeypatch):
    """A worker on another machine may not write where the driver can: it says so before any work."""
    import os

    from styler.inference.cluster import StyleWorker

    real_access = os.access
    monkeypatch.setattr("styler.io.files.os.access", lambda p, mode: not str(p).endswith("ro") and real_access(p, mode))
    (tmp_path / "ro").mkdir()
    worker = StyleWorker("demo", weights, "cpu", ApplyConfig())
    error, sha = worker.ready([tmp_path / "ok", tmp_path / "ro" / "sub"])
    assert isinstance(error, ConfigError) and "ro is not writable (on the worker at " in str(error) and not sha
    assert worker.ready([tmp_path / "ok"])[0] is None


def test_ray_options_without_the_ray_engine_are_refused(tmp_path, weights, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # set for the whole shell: not an error
    assert apply(tmp_path, weights=weights).exit_code == 0
    result = apply(tmp_path, "--ray-workers", "2", weights=weights)
    assert result.exit_code == 2 and "--ray-workers: only used with --engine ray" in result.output
