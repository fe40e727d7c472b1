"""Atomic writes: a temp file beside the target, then ``os.replace`` over it.

``tempfile.mkstemp`` creates files readable by their owner only (0600); a stylized image or a
weights file should get the permissions any other new file gets, so the temp file is chmod-ed
to ``0666 & ~umask`` (the umask at import) before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from styler.errors import ConfigError


def _read_umask() -> int:
    # POSIX reads the umask only by setting it. The umask is process-wide, so this runs once, at
    # import: a writer thread that set it to 0 for a moment would let the others create 0666
    # files and 0777 folders.
    umask = os.umask(0)
    os.umask(umask)
    return umask


FILE_MODE = 0o666 & ~_read_umask()  # what open() gives a new file


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[str]:
    """The name of a new temp file beside ``path`` for the block to write; when the block ends
    without an error the file is fsynced and renamed over ``path``, otherwise deleted. Every file
    styler writes goes through here, so a crash or a ``kill -9`` leaves the old file or the new
    complete one, never half of one (some writers re-create the file: the chmod comes after)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temps(paths: Iterable[Path]) -> None:
    """Delete the temp files :func:`atomic_path` left beside ``paths`` when its process was killed
    (a ``kill -9`` or a lost machine runs no cleanup). Only for a caller that knows no other
    process is writing these paths; each folder is listed once."""
    names: dict[Path, set[str]] = {}
    for path in paths:
        names.setdefault(Path(path).parent, set()).add(Path(path).name)
    for folder, wanted in names.items():
        with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(".") and entry.name.endswith(".tmp") \
                        and entry.name[1:].rsplit(".", 2)[0] in wanted:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)


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
