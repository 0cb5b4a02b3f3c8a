"""Atomic file writes: a file appears under its final name complete or not at all."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

__all__ = ["temp_pattern", "write_atomic"]

# write_atomic's temporary file of NAME is .NAME.<random>.tmp (tempfile.mkstemp's middle part).
_PREFIX = ".{name}."
_SUFFIX = ".tmp"


def temp_pattern(name: str) -> re.Pattern[str]:
    """The names :func:`write_atomic` gives the temporary file of ``name`` while it writes.

    A writer killed outright leaves that file behind; this tells it apart from other files.

    Example:
        >>> bool(temp_pattern("screenshot.png").fullmatch(".screenshot.png.k2j_9x.tmp"))
        True
    """
    prefix = re.escape(_PREFIX.format(name=name))
    return re.compile(rf"{prefix}.+{re.escape(_SUFFIX)}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory.

    The temporary file is flushed and fsynced, then renamed with :func:`os.replace`, which is
    atomic on one filesystem; on any failure it is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(
        prefix=_PREFIX.format(name=path.name), suffix=_SUFFIX, dir=path.parent
    )
    try:
        # mkstemp creates the file readable by its owner only; give it the mode a plain open()
        # would, so a report or figure is as readable as any other file the user writes.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
