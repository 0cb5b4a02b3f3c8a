"""Headless-Chromium screenshot of a rendered report (skipped where Chromium is missing)."""

from __future__ import annotations

import shutil
import struct

import pytest

from isokit.report.screenshot import ScreenshotError, main, screenshot

pytestmark = pytest.mark.chromium

needs_chromium = pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="headless Chromium not installed (apt-get install -y chromium)",
)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR follows the signature
    return width, height


@needs_chromium
def test_screenshot_of_the_report(small_report, tmp_path):
    out = tmp_path / "shot"
    shutil.copytree(small_report.out, out)
    path = screenshot(out)
    assert path == out.resolve() / "screenshot.png"
    data = path.read_bytes()
    assert _png_size(data) == (1280, 4000)
    # A blank page compresses to a few kB; figures and tables make it far larger.
    assert len(data) > 50_000
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_missing_report_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(ScreenshotError, match="report.html"):
        screenshot(tmp_path)
    assert main([str(tmp_path)]) == 2
    assert "isokit report" in capsys.readouterr().err


def test_missing_chromium_names_the_install_command(tmp_path, monkeypatch):
    (tmp_path / "report.html").write_text("<html></html>", encoding="utf-8")
    monkeypatch.setenv("CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(ScreenshotError, match="apt-get install -y chromium"):
        screenshot(tmp_path)
