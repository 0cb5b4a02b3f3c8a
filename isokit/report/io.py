"""Publishing a report directory as a whole: the old report or the new one, never a mix.

:class:`ReportDir` builds the complete new report in a staging directory beside ``DIR`` (in the
same parent, so a rename is atomic) and swaps it in when every file is written: on Linux in one
step that exchanges the two directories (``renameat2`` with ``RENAME_EXCHANGE``), so ``DIR`` is
never missing; elsewhere by two renames. While a run holds ``DIR`` the parent looks like this::

    PARENT/DIR                      the published report (the old one until the swap)
    PARENT/.DIR.lock                locked (flock) from before the probes to after the swap
    PARENT/.DIR.staging-XXXXXXXX    the new report, being written (the old one after an exchange)
    PARENT/.DIR.old-XXXXXXXX        without an exchange: the old report between the two renames

A second run into the same ``DIR`` finds the lock held and fails at once. A run killed outright
(SIGKILL, power loss) leaves its staging directory, which the next run into ``DIR`` removes; had it
been killed between the two renames of a swap, the next run first puts the old report back.
Because ``DIR`` is replaced as a whole, files of an earlier report that the new one does not write
(figures of a model no longer in the config) are gone; so that nothing else is ever deleted,
``DIR`` must be new, empty, or hold nothing but a report's files (:data:`REPORT_ENTRIES`).

Problems with ``DIR`` itself (empty, under a file, not writable, another run's) are
:class:`~isokit.report.checks.ConfigError` on ``--out``, raised before any probe runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import os
import re
import secrets
import shutil
import sys
from pathlib import Path
from types import TracebackType

from isokit._atomic import temp_pattern
from isokit.report.checks import ConfigError

__all__ = [
    "FIGURES",
    "PAGE",
    "RANKING",
    "REPORT_ENTRIES",
    "RESULTS",
    "SCREENSHOT",
    "SUMMARY",
    "SWEEP",
    "TRAINING",
    "ReportDir",
    "check_out",
    "exchange",
]

# The entries of a report directory: publish writes the first five, screenshot adds its image.
RESULTS = "results.json"
SUMMARY = "summary.csv"
RANKING = "ranking.csv"
TRAINING = "training.csv"
SWEEP = "sweep.csv"  # a sweep's report: one row per cell × statistic
PAGE = "report.html"
FIGURES = "figures"
SCREENSHOT = "screenshot.png"
#: What a report directory may hold: the files a report writes, and a screenshot of its page.
REPORT_ENTRIES = frozenset({RESULTS, SUMMARY, RANKING, TRAINING, SWEEP, PAGE, FIGURES, SCREENSHOT})
# The temporary file of a screenshot that was killed while writing.
_SCREENSHOT_TMP = temp_pattern(SCREENSHOT)


def check_out(path: str | os.PathLike) -> Path:
    """The absolute report directory ``path`` names, or a ``--out`` error saying the fix.

    Only looks, never writes: an empty name, a path that is or lies under a file, the root and
    a directory holding the current one are refused.

    Example:
        >>> check_out("")
        Traceback (most recent call last):
        ...
        isokit.report.checks.ConfigError: --out: is empty; pass a directory, e.g. --out out/report
    """
    if not str(path).strip():
        raise ConfigError("--out", "is empty; pass a directory, e.g. --out out/report")
    target = Path(path).resolve()  # a symlink to a report: replace the report, keep the link
    if not target.name:
        raise ConfigError("--out", f"{path} is the root directory; pass a directory below it")
    if target.exists() and not target.is_dir():
        raise ConfigError("--out", f"{path} exists and is not a directory; pass a directory")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(
                    "--out", f"{path} lies under {parent}, which is a file; pass a directory"
                )
            break
    cwd = Path.cwd().resolve()
    if target == cwd or target in cwd.parents:
        raise ConfigError(
            "--out",
            f"{path} holds the current directory, and a report replaces its directory as a "
            "whole; pass a subdirectory, e.g. --out out/report",
        )
    return target


def _not_a_report(target: Path) -> None:
    """Refuse to replace a directory that holds anything but a report's files."""
    try:
        entries = sorted(os.listdir(target))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise ConfigError("--out", f"cannot list {target} ({exc.strerror})") from None
    foreign = [e for e in entries if e not in REPORT_ENTRIES and not _SCREENSHOT_TMP.fullmatch(e)]
    if foreign:
        shown = ", ".join(map(repr, foreign[:3])) + (", ..." if len(foreign) > 3 else "")
        what = "which is not" if len(foreign) == 1 else "which are not"
        raise ConfigError(
            "--out",
            f"{target} holds {shown}, {what} part of an isokit report, and a report "
            "replaces its directory as a whole; pass a new or empty directory (or an earlier "
            "report's)",
        )


def _not_read_only(target: Path) -> None:
    """Refuse a read-only report directory: replacing it means deleting its files afterwards.

    Only the directories that hold files count (``DIR`` and ``DIR/figures``); the parent's own
    write permission is tested by taking the lock there.
    """
    for directory in (target, target / FIGURES):
        if directory.is_dir() and not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(
                "--out",
                f"{directory} is read-only, and a new report replaces {target} as a whole "
                f"(deleting its files); make it writable (chmod -R u+w {target}) or pass "
                "another directory",
            )


def _lock(path: Path, target: Path) -> int:
    """An exclusive lock on ``path`` (created if needed): its open descriptor, held until closed.

    The run that held the lock before unlinks the file when it is done; if that happened between
    our ``open`` and our ``flock``, the lock sits on a file no one else will open, so try again.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                "--out",
                f"another isokit run is writing {target} (it holds {path}); wait for it to "
                "finish or pass another directory",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        mine = os.fstat(fd)
        if current is not None and (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)


# renameat2(2): its dirfd meaning "relative to the working directory", and the flag that swaps.
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
# What renameat2 answers where the kernel or the filesystem cannot exchange: fall back.
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP}


@functools.cache
def _renameat2():
    """libc's ``renameat2``, or ``None`` where there is none (not Linux, a libc without it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def exchange(a: Path, b: Path) -> bool:
    """Swap the directories ``a`` and ``b`` in one atomic step; ``False`` where the system cannot.

    Linux's ``renameat2(..., RENAME_EXCHANGE)``: at no moment is either name missing. Where it
    is unavailable (another OS, an old kernel, a filesystem without it) nothing is changed and
    the caller falls back to two renames; any other failure raises :class:`OSError`.

    Example:
        >>> import tempfile
        >>> parent = Path(tempfile.mkdtemp())
        >>> (parent / "a").mkdir(); (parent / "b").mkdir(); _ = (parent / "a" / "x").write_text("")
        >>> swapped = exchange(parent / "a", parent / "b")
        >>> [p.name for p in (parent / ("b" if swapped else "a")).iterdir()], shutil.rmtree(parent)
        (['x'], None)
    """
    fn = _renameat2()
    if fn is None:
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _NO_EXCHANGE:
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class ReportDir:
    """A report directory replaced as a whole (module docstring).

    Enter it to take the lock, clean up after killed runs and start a staging directory;
    :meth:`write` files into the staging directory, and :meth:`commit` swaps it in. Leaving the
    block without :meth:`commit` (an error, Ctrl-C) discards the staging directory and leaves
    ``DIR`` as it was. ``path`` is checked on construction (:func:`check_out`).

    Example:
        >>> import tempfile
        >>> parent = Path(tempfile.mkdtemp())
        >>> with ReportDir(parent / "report") as out:
        ...     _ = out.write("results.json", "{}")
        ...     out.commit()
        >>> sorted(p.name for p in parent.iterdir()), shutil.rmtree(parent)
        (['report'], None)
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.target = check_out(path)
        self.staging: Path | None = None
        self.committed = False
        self._fd: int | None = None
        self._created: list[Path] = []
        name = re.escape(self.target.name)
        self._leftover = re.compile(rf"\.{name}\.(staging|old)-[0-9a-f]{{8}}")

    @property
    def lock_path(self) -> Path:
        return self.target.with_name(f".{self.target.name}.lock")

    # ------------------------------------------------------------------------------ enter

    def __enter__(self) -> ReportDir:
        parent = self.target.parent
        missing = [p for p in (parent, *parent.parents) if not p.exists()]
        try:
            parent.mkdir(parents=True, exist_ok=True)
            self._created = missing  # deepest first: the order to remove them in
            self._fd = _lock(self.lock_path, self.target)
        except OSError as exc:
            self._remove_created()
            raise ConfigError(
                "--out",
                f"cannot write in {parent} ({exc.strerror or type(exc).__name__}); "
                "pass a directory you can write to",
            ) from None
        try:
            self._clean_leftovers()
            _not_a_report(self.target)
            _not_read_only(self.target)
            self.staging = self._reserve("staging")
        except BaseException:
            self._release()
            raise
        return self

    def _reserve(self, kind: str) -> Path:
        """A new empty directory ``.DIR.KIND-XXXXXXXX`` beside ``DIR``."""
        while True:
            path = self.target.with_name(f".{self.target.name}.{kind}-{secrets.token_hex(4)}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            except OSError as exc:
                raise ConfigError(
                    "--out", f"cannot write in {path.parent} ({exc.strerror}); pass another one"
                ) from None
            return path

    def _clean_leftovers(self) -> None:
        """Remove what killed runs into ``DIR`` left (their lock is free: we hold it)."""
        matches = [(p, self._leftover.fullmatch(p.name)) for p in self.target.parent.iterdir()]
        found = [p for p, m in matches if m]
        old = [p for p, m in matches if m and m.group(1) == "old"]
        if old and not self.target.exists():
            # Killed between the two renames of a swap: the old report is complete; restore it.
            keep = max(old, key=lambda p: p.stat().st_mtime)
            os.rename(keep, self.target)
            found.remove(keep)
        for path in found:
            shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------------------------ write

    def write(self, name: str, data: bytes | str) -> Path:
        """Write ``name`` (relative, ``/``-separated) into the new report; return its final path.

        The file is flushed to disk before the swap can make it visible.
        """
        if self.staging is None:
            raise RuntimeError("ReportDir.write() outside its `with` block or after commit()")
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"output names must stay inside the directory, got {name!r}")
        staged = self.staging / rel
        staged.parent.mkdir(parents=True, exist_ok=True)
        with open(staged, "xb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        return self.path / rel

    def commit(self) -> None:
        """Swap the new report in for the old one, then remove the old one.

        Into an existing ``DIR`` the swap is one atomic :func:`exchange`, so ``DIR`` is never
        missing; where the system has none, ``DIR`` moves aside and the new report moves in (two
        renames, with the old report put back if the second fails). A new ``DIR`` is one rename.
        """
        if self.staging is None:
            raise RuntimeError("ReportDir.commit() outside its `with` block or twice")
        _fsync_dir(self.staging)
        if not self.target.exists():
            os.rename(self.staging, self.target)
            old = None
        elif exchange(self.staging, self.target):
            old = self.staging  # now holds the old report; a killed run's next run removes it
        else:
            old = self._swap_by_renames()
        self.staging = None
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(self.target.parent)

    def _swap_by_renames(self) -> Path:
        """``DIR`` aside, the new report in; return where the old report now is."""
        old = self._reserve("old")
        os.rename(self.target, old)  # onto the empty directory just reserved
        try:
            os.rename(self.staging, self.target)
        except BaseException:
            os.rename(old, self.target)
            raise
        return old

    # ------------------------------------------------------------------------------ exit

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _release(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None
        if self._fd is not None:
            # Unlink while still holding the lock, so no other run can lock this file after us.
            with contextlib.suppress(OSError):
                os.unlink(self.lock_path)
            os.close(self._fd)
            self._fd = None
        if not self.committed:
            self._remove_created()

    def _remove_created(self) -> None:
        """Directories this run made for ``DIR``'s parent and left empty (deepest first)."""
        for directory in self._created:
            with contextlib.suppress(OSError):
                directory.rmdir()
        self._created = []
