"""Atomic output: a file appears under its final name complete or not at all.

Every file is written to a temporary name in the same directory (so :func:`os.replace` is an
atomic rename on one filesystem) and then moved into place. :class:`OutputDir` stages a whole run
in a hidden directory inside the output directory and moves each finished file into place; a run
that fails or is interrupted leaves the files of earlier runs untouched, no half-written file, and,
if it created the output directory and finished nothing, no directory either.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from isokit._atomic import write_atomic

__all__ = ["OutputDir", "write_atomic"]


class OutputDir:
    """A run's output directory: stage files in a hidden temp dir, move each one into place.

    Example:
        >>> with OutputDir("out/report") as out:  # doctest: +SKIP
        ...     out.write("results.json", text)
        ...     out.write("figures/spectrum.png", png_bytes)
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._created: list[Path] = []
        self._staging: Path | None = None
        self.written: list[Path] = []

    def __enter__(self) -> OutputDir:
        if self.path.exists() and not self.path.is_dir():
            raise NotADirectoryError(f"{self.path} exists and is not a directory")
        # Remember which directories we create, to remove them again if nothing gets finished.
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        self._created = missing
        self._staging = Path(tempfile.mkdtemp(prefix=".isokit-staging-", dir=self.path))
        return self

    def write(self, name: str, data: bytes | str) -> Path:
        """Write ``data`` as ``name`` (relative, ``/``-separated) and move it into place."""
        if self._staging is None:
            raise RuntimeError("OutputDir.write() outside its `with` block")
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"output names must stay inside the directory, got {name!r}")
        staged = self._staging / rel
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        final = self.path / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        self.written.append(final)
        return final

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        if exc_type is not None and not self.written:
            # Deepest first; only directories this run made and left empty.
            for directory in self._created:
                with contextlib.suppress(OSError):
                    directory.rmdir()
