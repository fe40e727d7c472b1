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
