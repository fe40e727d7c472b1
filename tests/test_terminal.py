"""What an 80-column terminal shows: help that fits, messages wrapped at word boundaries, a
progress bar for one photo. The terminal tests write to a pseudo-terminal 80 columns wide."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import struct
import sys
import termios
import threading

import pytest
from click.testing import CliRunner

from styler.cli import main
from tests.conftest import make_photo

_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")


@pytest.mark.parametrize("command", [[], *([name] for name in sorted(main.commands))])
def test_every_help_fits_80_columns_and_no_command_is_cut_off(command):
    result = CliRunner().invoke(main, [*command, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line for line in lines if len(line) > 80] == []
    if not command:
        listed = lines[lines.index("Commands:") + 1:]
        assert [line.split()[0] for line in listed] == sorted(main.commands)
        assert not [line for line in listed if line.endswith("...")], listed


def in_terminal(args: list[str], monkeypatch) -> list[str]:
    """``styler ARGS`` with stdout and stderr on an 80x40 pseudo-terminal: the lines it showed,
    escape sequences removed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 80, 0, 0))
    chunks: list[bytes] = []

    def drain() -> None:  # a full terminal buffer would block the writer
        with contextlib.suppress(OSError):
            while chunk := os.read(master, 1 << 16):
                chunks.append(chunk)

    reader = threading.Thread(target=drain)
    reader.start()
    terminal = open(slave, "w", encoding="utf-8", buffering=1)
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys, "stdout", terminal)
    monkeypatch.setattr(sys, "stderr", terminal)
    with contextlib.suppress(SystemExit):
        main.main(args, prog_name="styler")
    terminal.close()
    reader.join(timeout=10)
    os.close(master)
    text = _ESCAPE.sub("", b"".join(chunks).decode("utf-8", "replace"))
    return [part for line in text.split("\r\n") for part in line.split("\r") if part.strip()]


def test_messages_wrap_at_word_boundaries_at_80_columns(tmp_path, weights, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_photo(tmp_path / "a.jpg")
    lines = in_terminal(["apply", "a.jpg", "--style", "demo", "--weights-dir", str(weights), "-o", "final"],
                        monkeypatch)
    expected = ("error: -o final is not an image or video file name; name a file such as final.jpg, or a "
                "folder with a trailing slash: final/")
    assert len(lines) > 1 and all(len(line) <= 80 for line in lines), lines
    assert " ".join(line.strip() for line in lines) == expected  # cut between words only


def test_one_photo_shows_a_progress_bar(tmp_path, weights, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_photo(tmp_path / "big.jpg", size=(320, 240))
    lines = in_terminal(["apply", "big.jpg", "--style", "demo", "--weights-dir", str(weights), "--device", "cpu"],
                        monkeypatch)
    assert any(line.startswith("stylizing big.jpg ") and "1/1" in line for line in lines), lines
    assert lines[-1] == "wrote big_demo.jpg" and all(len(line) <= 80 for line in lines)
