"""``retain_freed_memory``: a process keeps the memory a training step (or an image) frees, so
the next does not fault it back in page by page; every ``styler`` command sets it first."""

import json
import platform
import socket
import subprocess
import sys

import pytest
from click.testing import CliRunner

import styler.cli.app
import styler.heap
from styler.cli import main

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# Allocate, touch and free a 64 MB tensor (above glibc's largest mmap threshold) as a training
# step frees and reallocates its activations; count the page faults of the last five rounds.
# Rounds may still take fresh memory now and then: an aligned block a little larger than the one
# freed does not fit in it until neighbouring free blocks have merged, and small allocations in
# between can split a free block. That settles within a few rounds.
FAULTS = """
import json, resource, sys, torch
from styler.heap import retain_freed_memory
retained = retain_freed_memory() if sys.argv[1] == "retain" else False
for round in range(20):
    if round == 15:
        start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 << 20)
    del x
print(json.dumps({"retained": retained, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start}))
"""


def faults(heap: str) -> dict:
    out = subprocess.run([sys.executable, "-c", FAULTS, heap], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator settings")
def test_freed_memory_is_reused_without_page_faults():
    pages = (64 << 20) // 4096
    system, retained = faults("system"), faults("retain")
    assert system["retained"] is False and retained["retained"] is True
    assert system["faults"] >= 5 * pages * 0.9  # every round faults its 64 MB in again
    assert retained["faults"] <= pages * 1.1  # one settling round at most


@pytest.mark.skipif(GLIBC, reason="only where glibc is not the allocator")
def test_elsewhere_it_says_it_did_nothing():
    assert styler.heap.retain_freed_memory() is False


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(styler.cli.app, "retain_freed_memory", lambda: seen.append(True) or True)
    return seen


def test_train_retains_freed_memory_before_it_builds_anything(calls, tmp_path, photo_dir):
    result = CliRunner().invoke(main, ["train", "--style", str(tmp_path / "missing.png"),
                                       "--content-dir", str(photo_dir), "--steps", "1"])
    assert result.exit_code == 2 and "no such file" in result.output
    assert calls == [True]


def test_ui_retains_freed_memory(calls, tmp_path):
    with socket.socket() as taken:  # a taken port stops the command after its set-up
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        result = CliRunner().invoke(main, ["ui", "--no-browser", "--weights-dir", str(tmp_path), "--port",
                                           str(taken.getsockname()[1])])
    assert result.exit_code == 1 and "cannot listen on" in result.output
    assert calls == [True]


def test_every_command_retains_freed_memory(calls, tmp_path):
    result = CliRunner().invoke(main, ["styles", "--weights-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert calls == [True]
