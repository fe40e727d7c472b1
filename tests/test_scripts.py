"""The set-up scripts a newcomer runs first answer ``--help`` with their usage, never by acting on
a folder named ``--help``."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("script", "argument"), [("export_training_photos.py", "out"),
                                                  ("export_skimage_photos.py", "out"),
                                                  ("fetch_vgg16.py", "cache")])
def test_help_prints_the_usage_and_touches_nothing(tmp_path, script, argument):
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--help"], cwd=tmp_path,
                            capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: {script} [-h] [{argument}]")
    assert list(tmp_path.iterdir()) == []
