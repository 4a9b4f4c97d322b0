"""Owner-only files and folders: created 0600 / 0700 whatever the process's umask.

Called wherever tunery creates local state that may hold another user's interest: the store
(the SQLite file and its folder, :mod:`tunery.store.engine`), the local runner (the log of each
trial and its folders, :mod:`controller.runners.local`), ``report_metrics`` (the
pushed-metrics file) and ``tune()`` (the pickled objective and the trial spec). A umask can
only take permission bits away, so ``0o600`` could still come out as ``0o400``; each function
sets the mode explicitly on what it creates. Existing files and folders are left as they are
(they are the user's), except that :func:`write_private` replaces its file.

:func:`is_private_file` is the check before trusting a file's content enough to act on it
(the runner signals a pid read from a file only when the file passes it).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` and its missing parents as 0700 folders; returns it as a Path.

    Folders that already exist keep their mode.
    """
    target = Path(path)
    missing: list[Path] = []
    current = target
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            continue  # created meanwhile by someone else: theirs, keep its mode
        os.chmod(folder, DIR_MODE)
    return target


def private_file(path: str | os.PathLike[str], *, truncate: bool = False) -> Path:
    """Create ``path`` as an empty 0600 file unless it exists (its folder must exist: see
    :func:`private_dir`). With ``truncate``, an existing file is emptied (its mode kept).
    Returns the path.
    """
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        if truncate:
            os.truncate(target, 0)
        return target
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return target


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """``os.open(path, flags | O_CREAT)`` that creates a missing file 0600 (and its missing
    folders 0700). Returns the file descriptor.
    """
    try:
        return os.open(path, flags & ~os.O_CREAT)
    except FileNotFoundError:
        private_dir(Path(path).parent)
        private_file(path)
        return os.open(path, flags, FILE_MODE)


def write_private(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` atomically with a 0600 file holding ``data`` (folders 0700), so a
    reader never sees half a file and nobody else could have changed what it reads."""
    target = Path(path)
    private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    os.replace(tmp, target)


def is_private_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a regular file (not a link) owned by this user that neither its
    group nor others can write: nobody else can have put its content there."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_uid == os.getuid()
        and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )
