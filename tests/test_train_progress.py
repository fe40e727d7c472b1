"""The training bar at 80 columns, plain lines off a terminal, and the one-time prediction."""

import io
import re
import time

from rich.console import Console

from styler.cli import train_progress
from styler.cli.train_progress import TrainProgress, clock, fit
from tests import test_train_cli
from tests.test_train_cli import TINY, train

in_tmp = test_train_cli.in_tmp

LOSSES = {"total": 2.3456, "content": 0.91234, "style": 0.27891, "adv": 0.51234, "d": 1.98765}


def test_fit_keeps_whole_parts_in_order():
    assert fit(["eta 1:02:03", "best val 1.23", "total=2.35"], 25) == "eta 1:02:03 best val 1.23"
    assert fit(["eta 1:02:03", "x" * 40], 20) == "eta 1:02:03"
    assert clock(3723) == "1:02:03" and clock(65) == "1:05"


def test_at_80_columns_the_bar_shows_step_time_left_and_best_validation(monkeypatch):
    screen = io.StringIO()
    monkeypatch.setattr(train_progress, "console",
                        lambda stderr=True: Console(force_terminal=True, file=screen, width=80))
    with TrainProgress(2000, 0, quiet=False) as bar:
        bar.update(120, LOSSES, 0.25, best_val=1.2345)
    lines = [line for line in screen.getvalue().splitlines() if "step" in line]
    visible = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", lines[-1].split("\r")[-1])
    assert "step 120/2000" in visible and "eta 2:05:20" in visible and "best val 1.23" in visible
    assert len(visible.rstrip()) <= 80, visible


def test_off_a_terminal_a_plain_line_every_interval_not_every_step(capsys):
    with TrainProgress(100, 0, quiet=False, every_s=3600) as bar:
        for step in range(1, 101):
            bar.update(step, LOSSES, 5.0, best_val=None)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("step 1/100 eta") and lines[1].startswith("step 100/100")
    assert "content=0.912" in lines[0]  # off a terminal nothing needs to be cut


def test_a_budget_counts_down_to_its_deadline():
    bar = TrainProgress(100, 0, quiet=True, deadline=time.perf_counter() + 125)
    assert bar.left(10, 1.0) in ("left 2:05", "left 2:04")


def test_the_run_predicts_its_length_once_and_a_long_cpu_run_names_budget(photo_dir, style_image, monkeypatch):
    monkeypatch.setattr("styler.cli.train_progress.PREDICT_AFTER", 2)
    monkeypatch.setattr("styler.cli.train_progress.LONG_RUN_S", 0)
    result = train("--style", style_image, "--content-dir", photo_dir, *TINY, "--steps", 4, "--name", "p")
    assert result.exit_code == 0, result.output
    predictions = [line for line in result.stderr.splitlines() if line.startswith("about ")]
    assert len(predictions) == 1 and "more for 4 steps" in predictions[0] and "--budget 10m" in predictions[0]
    assert "run folder" in result.stderr.splitlines()[0]
