"""Atomic writes: a temp file beside the target, then ``os.replace`` over it.

``tempfile.mkstemp`` creates files readable by their owner only (0600); a stylized image or a
weights file should get the permissions any other new file gets, so the temp file is chmod-ed
to ``0666 & ~umask`` (the umask at import) before it is renamed into place.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from styler.errors import ConfigError

# What atomic_path's mkstemp names a temp file: ".<target name>.<8 random characters>.tmp".
_TEMP_NAME = re.compile(r"\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp")
# A temp file last written before this moment belongs to a process that died before this one
# imported styler (a kill -9, a power cut): never to a write still under way.
_STARTED = time.time()


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


def _names_matcher(names: Iterable[str]) -> Callable[[str], bool]:
    """Exact names, or shell patterns such as ``step_*.png``."""
    exact = set(names)
    patterns = [name for name in exact if any(c in name for c in "*?[")]
    return lambda name: name in exact or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _remove_if_stale(path: Path) -> bool:
    with contextlib.suppress(FileNotFoundError):  # another process cleaning the same folder
        if path.is_file() and not path.is_symlink() and path.stat().st_mtime < _STARTED:
            path.unlink()
            return True
    return False


def remove_stale_temps_in(folder: Path, names: Iterable[str]) -> list[Path]:
    """Delete the temp files :func:`atomic_path` left in ``folder`` for targets named in ``names``
    (shell patterns such as ``step_*.png`` allowed) and last written before this process started,
    so a killed writer leaves no litter once its folder is used again. Other files, and a write
    under way in another process, are left alone; returns the paths removed."""
    folder, wanted = Path(folder), _names_matcher(names)
    temps = [(path, _TEMP_NAME.fullmatch(path.name)) for path in folder.glob(".*.tmp")] if folder.is_dir() else []
    return [path for path, match in temps if match and wanted(match["target"]) and _remove_if_stale(path)]


def remove_stale_temps(paths: Iterable[Path]) -> list[Path]:
    """:func:`remove_stale_temps_in` for each of ``paths``, in its own folder: a killed writer's
    temp files beside its outputs (a ``kill -9`` or a lost machine runs no cleanup)."""
    by_folder: dict[Path, set[str]] = {}
    for path in map(Path, paths):
        by_folder.setdefault(path.parent, set()).add(path.name)
    return [removed for folder, names in by_folder.items() for removed in remove_stale_temps_in(folder, names)]
