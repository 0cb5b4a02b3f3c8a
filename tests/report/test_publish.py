"""Publishing: the report directory is replaced as a whole, under a lock, with unique file names."""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from isokit.cli import main
from isokit.report import io, make_report, publish, render
from isokit.report.io import ReportDir
from isokit.report.publish import FigureImage
from isokit.report.style import unique_slugs

TINY = """
seeds = [0]
schemes = ["orthogonal"]

[inputs]
examples = 2

[probes]
signal = false

[output]
formats = ["png"]

[[models]]
kind = "mlp"
in_features = 4
width = 4
depth = 2
"""


@pytest.fixture
def tiny_config(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY, encoding="utf-8")
    return path


@pytest.fixture
def probe_calls(monkeypatch) -> list:
    """Records every call of the probe (and refuses it): a check must fail before any probe."""
    import isokit.probe

    calls: list = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("the probe ran although the run should have failed before it")

    monkeypatch.setattr(isokit.probe, "profile", refuse)
    return calls


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


@pytest.fixture
def old_report(small_report, tmp_path) -> Path:
    """A published report in tmp_path/out (a copy of the shared small report)."""
    return Path(shutil.copytree(small_report.out, tmp_path / "out"))


@pytest.fixture
def no_figures(monkeypatch) -> None:
    """Publishing without drawing (fast): what is tested here is how files reach DIR."""
    monkeypatch.setattr(publish, "build_figures", lambda *a, **k: [])


# ------------------------------------------------------------------------------ atomic swap


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()], ids=repr)
def test_a_failure_while_publishing_leaves_the_old_report_byte_identical(
    small_report, old_report, monkeypatch, error, no_figures
):
    before = _snapshot(old_report)
    real_write = ReportDir.write

    def failing_write(self, name, data):
        if name == "report.html":  # the last file: everything else is already staged
            raise error
        return real_write(self, name, data)

    monkeypatch.setattr(ReportDir, "write", failing_write)
    with pytest.raises(type(error)):
        render(small_report.results, old_report, quiet=True)
    assert _snapshot(old_report) == before
    assert _leftovers(old_report.parent, "out") == []  # no staging directory, no lock file


def test_a_failure_inside_the_swap_puts_the_old_report_back(
    small_report, old_report, monkeypatch, no_figures
):
    before = _snapshot(old_report)
    real_rename = os.rename

    def rename(src, dst):
        if ".staging-" in str(src):  # the new report moving in, after the old one moved aside
            raise KeyboardInterrupt
        return real_rename(src, dst)

    monkeypatch.setattr(io, "exchange", lambda a, b: False)  # the two-rename swap
    monkeypatch.setattr(io.os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        render(small_report.results, old_report, quiet=True)
    assert _snapshot(old_report) == before
    assert _leftovers(old_report.parent, "out") == []


def _spy(calls: list, name: str, real, check):
    """``real``, recording its calls and running ``check`` right before and after each."""

    def call(*args, **kwargs):
        check()
        result = real(*args, **kwargs)
        calls.append((name, args, result))
        check()
        return result

    return call


def _mark_old(report: Path) -> Path:
    """A file only the old report has: gone once the new report is in."""
    stale = report / "figures" / "stale.png"
    stale.write_bytes(b"old")
    return stale


@pytest.mark.skipif(io._renameat2() is None, reason="this system has no renameat2")
def test_an_existing_report_is_swapped_in_one_exchange_and_never_missing(
    small_report, old_report, monkeypatch, no_figures
):
    stale = _mark_old(old_report)

    def whole_report_there():
        assert (old_report / "results.json").is_file(), "DIR went missing during the swap"

    calls: list = []
    monkeypatch.setattr(io, "exchange", _spy(calls, "exchange", io.exchange, whole_report_there))
    monkeypatch.setattr(io.os, "rename", _spy(calls, "rename", os.rename, whole_report_there))
    monkeypatch.setattr(
        io.shutil, "rmtree", _spy(calls, "rmtree", shutil.rmtree, whole_report_there)
    )
    render(small_report.results, old_report, quiet=True)
    assert [(name, result) for name, _, result in calls if name != "rmtree"] == [("exchange", True)]
    ((staging, target),) = [args for name, args, _ in calls if name == "exchange"]
    assert ".out.staging-" in staging.name and target == old_report.resolve()
    assert any(name == "rmtree" and args[0] == staging for name, args, _ in calls)  # the old one
    assert not stale.exists() and (old_report / "report.html").is_file()
    assert _leftovers(old_report.parent, "out") == []


def _renameat2_failing(code: int):
    def renameat2(*args):
        ctypes.set_errno(code)
        return -1

    return lambda: renameat2


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EINVAL], ids=errno.errorcode.get)
def test_without_an_exchange_the_swap_falls_back_to_two_renames(
    small_report, old_report, monkeypatch, no_figures, code
):
    stale = _mark_old(old_report)
    monkeypatch.setattr(io, "_renameat2", _renameat2_failing(code))
    calls: list = []
    monkeypatch.setattr(io.os, "rename", _spy(calls, "rename", os.rename, lambda: None))
    render(small_report.results, old_report, quiet=True)
    (aside, _), (staged, into) = [args for _, args, _ in calls]
    assert Path(aside) == old_report.resolve() and ".out.staging-" in Path(staged).name
    assert Path(into) == old_report.resolve()
    assert not stale.exists() and _leftovers(old_report.parent, "out") == []


def test_a_failed_exchange_leaves_the_old_report_byte_identical(
    small_report, old_report, monkeypatch, no_figures
):
    before = _snapshot(old_report)
    monkeypatch.setattr(io, "_renameat2", _renameat2_failing(errno.EACCES))
    with pytest.raises(PermissionError):
        render(small_report.results, old_report, quiet=True)
    assert _snapshot(old_report) == before
    assert _leftovers(old_report.parent, "out") == []


def test_a_new_directory_is_published_with_one_rename(
    small_report, tmp_path, monkeypatch, no_figures
):
    calls: list = []
    monkeypatch.setattr(io, "exchange", _spy(calls, "exchange", io.exchange, lambda: None))
    monkeypatch.setattr(io.os, "rename", _spy(calls, "rename", os.rename, lambda: None))
    render(small_report.results, tmp_path / "new", quiet=True)
    assert [name for name, _, _ in calls] == ["rename"]
    assert (tmp_path / "new" / "report.html").is_file()


def test_figures_an_earlier_report_wrote_are_gone(small_report, old_report):
    assert (old_report / "figures" / "spectrum_resnet8-w2-none.png").is_file()
    cfg = small_report.config
    mlp_only = dataclasses.replace(cfg, models=cfg.models[:1])
    records = [r for r in small_report.results.records if r.model == cfg.models[0].label]
    results = dataclasses.replace(small_report.results, config=mlp_only, records=records)
    render(results, old_report, quiet=True)
    figures = {p.stem for p in (old_report / "figures").iterdir()}
    assert "spectrum_resnet8-w2-none" not in figures and "spectrum_mlp-tanh-w6-d3" in figures
    assert json.loads((old_report / "results.json").read_text())["config"]["models"] == [
        cfg.models[0].to_dict()
    ]


def test_a_directory_that_is_not_a_report_is_never_replaced(small_report, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep", encoding="utf-8")
    code = main(["report", "--from", str(small_report.out / "results.json"), "--out", str(mine)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--out" in err[0] and "notes.txt" in err[0]
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]


# ------------------------------------------------------------------------------ the lock


def test_a_second_run_into_a_locked_directory_fails_at_once(
    tiny_config, tmp_path, capsys, probe_calls
):
    out = tmp_path / "out"
    fd = os.open(tmp_path / ".out.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds DIR
        start = time.perf_counter()
        code = main(["report", str(tiny_config), "--out", str(out), "--quiet"])
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "another isokit run" in err[0] and "--out" in err[0]
    assert elapsed < 5 and probe_calls == []
    assert not out.exists()


def test_the_lock_is_released_and_its_file_removed(tiny_config, tmp_path):
    make_report(tiny_config, out=tmp_path / "out", quiet=True)
    make_report(tiny_config, out=tmp_path / "out", quiet=True)  # not locked out by the first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny.toml"]


_CHILD = textwrap.dedent(
    """
    import sys, time
    from isokit.report import io, make_report, publish

    publish.build_figures = lambda *a, **k: []  # fast: the files are what matters

    real = io.ReportDir.write

    def slow(self, name, data):
        path = real(self, name, data)
        if name == "report.html":  # every file staged, not yet swapped in
            print("staged", flush=True)
            time.sleep(120)
        return path

    io.ReportDir.write = slow
    make_report(from_results=sys.argv[1], out=sys.argv[2], quiet=True)
    """
)


def test_a_killed_run_leaves_a_staging_dir_that_the_next_run_removes(
    small_report, old_report, no_figures
):
    before = _snapshot(old_report)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(small_report.out / "results.json"), str(old_report)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "staged"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    left = _leftovers(old_report.parent, "out")
    assert any(".staging-" in name for name in left), left
    assert _snapshot(old_report) == before  # SIGKILL mid-publish: the old report, whole
    make_report(from_results=small_report.out / "results.json", out=old_report, quiet=True)
    assert _leftovers(old_report.parent, "out") == []
    assert (old_report / "report.html").is_file()


def test_a_run_killed_between_the_renames_gets_its_old_report_back(old_report):
    before = _snapshot(old_report)
    parent = old_report.parent
    os.rename(old_report, parent / ".out.old-0123abcd")  # DIR aside, the new one not yet in
    (parent / ".out.staging-89abcdef").mkdir()
    with ReportDir(old_report):
        pass  # entering cleans up; leaving without commit() changes nothing
    assert _snapshot(old_report) == before
    assert _leftovers(parent, "out") == []


# ------------------------------------------------------------------------------ file names


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.ids += [v for k, v in attrs if k == "id"]


def test_labels_that_differ_only_in_unsafe_characters_get_their_own_figures(tiny_config, tmp_path):
    text = tiny_config.read_text(encoding="utf-8")
    models = text[text.index("[[models]]") :]
    labelled = text.replace(models, models.replace("[[models]]", '[[models]]\nlabel = "a/b"'))
    labelled += models.replace("[[models]]", '[[models]]\nlabel = "a:b"')
    config = tmp_path / "labels.toml"
    config.write_text(labelled, encoding="utf-8")
    out = tmp_path / "out"
    make_report(config, out=out, quiet=True)
    spectra = sorted(p.name for p in (out / "figures").glob("spectrum_*.png"))
    assert len(spectra) == 2, spectra
    parser = _Ids()
    parser.feed((out / "report.html").read_text(encoding="utf-8"))
    assert parser.ids and len(parser.ids) == len(set(parser.ids))
    assert {f"spectrum_{s}" for s in unique_slugs(["a/b", "a:b"]).values()} <= set(parser.ids)


def test_unique_slugs_never_collide_and_are_stable():
    labels = ["a/b", "a:b", "a b", "a_b", "MLP", "mlp", "x" * 300, "a-b"]
    slugs = unique_slugs(labels)
    folded = [s.casefold() for s in slugs.values()]
    assert len(set(folded)) == len(labels)
    assert all(len(s) < 100 and "/" not in s and ":" not in s for s in slugs.values())
    assert unique_slugs(labels) == slugs
    assert unique_slugs(["plain"]) == {"plain": "plain"}


def test_render_html_refuses_duplicate_figure_names(small_report, tmp_path, monkeypatch):
    image = FigureImage(name="moments", title="m1", caption="", png=b"png")
    twice = [(image, {"png": b"png", "svg": b"svg"})] * 2
    monkeypatch.setattr(publish, "build_figures", lambda *a, **k: twice)
    with pytest.raises(ValueError, match="unique"):
        render(small_report.results, tmp_path / "dup", quiet=True)
    assert not (tmp_path / "dup").exists()


# ------------------------------------------------------------------------------ bad --out


def _bad_out_cases(tmp_path: Path) -> dict[str, str]:
    file = tmp_path / "a-file"
    file.write_text("x", encoding="utf-8")
    return {
        "empty": "",
        "blank": "  ",
        "a file": str(file),
        "under a file": str(file / "out"),
        "the root": "/",
        "the current directory": ".",
    }


@pytest.mark.parametrize(
    "case", ["empty", "blank", "a file", "under a file", "the root", "the current directory"]
)
def test_a_bad_out_exits_2_before_any_probe(case, tiny_config, tmp_path, capsys, probe_calls):
    out = _bad_out_cases(tmp_path)[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["report", str(tiny_config), "--out", out, "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("isokit: error: --out: ") and "internal error" not in err[0]
    assert probe_calls == []
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written
    assert (tmp_path / "a-file").read_text(encoding="utf-8") == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_parent_exits_2_before_any_probe(tiny_config, tmp_path, capsys, probe_calls):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        code = main(["report", str(tiny_config), "--out", str(parent / "out"), "--quiet"])
    finally:
        parent.chmod(0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--out" in err[0] and "cannot write" in err[0]
    assert probe_calls == [] and list(parent.iterdir()) == []


def test_an_unwritable_parent_exits_2_before_any_probe(
    tiny_config, tmp_path, capsys, probe_calls, monkeypatch
):
    # The same path as a read-only parent, for runs as root (who may write anywhere).
    real_open = os.open

    def read_only(path, flags, *args):
        if str(path).endswith(".lock"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(io.os, "open", read_only)
    out = tmp_path / "new" / "out"
    code = main(["report", str(tiny_config), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "--out" in err[0] and "cannot write" in err[0] and "Permission denied" in err[0]
    assert probe_calls == []
    assert not (tmp_path / "new").exists()  # the parent it made for DIR is removed again


# ------------------------------------------------------------------------------ read-only DIR


def _without_dac_override() -> list[str] | None:
    """A command prefix that runs a child without root's permission bypass, if there is one."""
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0:
        return []
    if setpriv is None:
        return None
    caps = "-dac_override,-dac_read_search"
    return [setpriv, "--bounding-set", caps, "--inh-caps", caps]


@pytest.mark.parametrize("read_only", ["out", "out/figures"])
def test_a_read_only_report_directory_is_refused_before_any_probe(
    tiny_config, old_report, capsys, probe_calls, monkeypatch, read_only
):
    # Before: a read-only DIR (in a writable parent) was swapped out anyway and its old copy,
    # which could not be deleted, stayed behind as .out.old-XXXXXXXX for good. As root (who
    # may write anywhere) the permission is simulated; the next test runs it for real.
    denied = old_report.parent / read_only
    real_access = io.os.access
    monkeypatch.setattr(
        io.os, "access", lambda p, mode, **kw: Path(p) != denied and real_access(p, mode, **kw)
    )
    before = _snapshot(old_report)
    assert main(["report", str(tiny_config), "--out", str(old_report), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--out: {denied} is read-only" in err and "chmod -R u+w" in err
    assert err.count("\n") == 1
    assert probe_calls == []
    assert _snapshot(old_report) == before
    assert _leftovers(old_report.parent, "out") == []


def test_a_read_only_report_directory_is_refused_for_real(tiny_config, old_report):
    prefix = _without_dac_override()
    if prefix is None:
        pytest.skip("root without setpriv: read-only directories cannot be made to bind")
    before = _snapshot(old_report)
    old_report.chmod(0o555)
    try:
        child = subprocess.run(
            [*prefix, sys.executable, "-m", "isokit.cli", "report", str(tiny_config)]
            + ["--out", str(old_report), "--quiet"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        old_report.chmod(0o755)
    assert child.returncode == 2, child.stderr
    assert "is read-only" in child.stderr
    assert _snapshot(old_report) == before
    assert _leftovers(old_report.parent, "out") == []


def test_foreign_files_are_listed_with_the_right_verb(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("x")
    with pytest.raises(io.ConfigError, match="'notes.txt', which is not part"):
        ReportDir(out).__enter__()
    (out / "more.txt").write_text("y")
    with pytest.raises(io.ConfigError, match="'more.txt', 'notes.txt', which are not part"):
        ReportDir(out).__enter__()
