"""Atomic writes: a temp file beside the target, then ``os.replace`` over it.

``tempfile.mkstemp`` creates files readable by their owner only (0600); a stylized image or a
weights file should get the permissions any other new file gets, so the temp file is chmod-ed
to ``0666 & ~umask`` before it is renamed into place.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from styler.errors import ConfigError


def default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def temp_beside(path: Path) -> tuple[int, str]:
    """An open file descriptor and the name of a new temp file in ``path``'s folder."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, default_mode())
    return fd, tmp


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_writable(folder: Path, option: str) -> None:
    """``folder`` exists and is writable, or could be created: checked up front, not after training."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{option} {folder}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {folder}: {existing} is not writable")
