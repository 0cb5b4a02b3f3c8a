"""write_atomic: complete files under their final name, with the mode a plain open() gives."""

from __future__ import annotations

import os
import stat

import pytest

from isokit import write_atomic


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path, mask):
    old = os.umask(mask)
    try:
        path = write_atomic(tmp_path / "a.json", "{}\n")
        plain = tmp_path / "plain.json"
        plain.write_text("{}\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_keeps_the_old_content_and_leaves_no_temporary(tmp_path):
    path = write_atomic(tmp_path / "a.txt", "old")
    with pytest.raises(TypeError):
        write_atomic(path, 3.5)  # not bytes or str: fails before the rename
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
