"""Screenshot a rendered report with headless Chromium: ``python -m isokit.report.screenshot DIR``.

Renders ``DIR/report.html`` at 1280×4000 and writes ``DIR/screenshot.png``, so a human (or CI) can
check at a glance that the page lays out and its figures show. The page is self-contained, so
Chromium runs with networking and background services off.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from isokit._atomic import write_atomic
from isokit.report.io import PAGE, SCREENSHOT

__all__ = ["ScreenshotError", "find_chromium", "screenshot"]

_CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_INSTALL_HINT = "install it with `apt-get install -y chromium` (Debian/Ubuntu) or set CHROMIUM"


class ScreenshotError(RuntimeError):
    """Chromium is missing, the report is missing, or Chromium produced no screenshot."""


def find_chromium() -> str | None:
    """The Chromium executable: ``$CHROMIUM``, ``/usr/bin/chromium``, or one on ``PATH``."""
    env = os.environ.get("CHROMIUM")
    if env:
        return env if shutil.which(env) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def screenshot(
    directory: str | Path,
    *,
    width: int = 1280,
    height: int = 4000,
    timeout: float = 120.0,
) -> Path:
    """Render ``directory/report.html`` and save ``directory/screenshot.png``; return its path."""
    directory = Path(directory).resolve()
    page = directory / PAGE
    if not page.is_file():
        raise ScreenshotError(f"{page} not found; run `isokit report --out {directory}` first")
    chromium = find_chromium()
    if chromium is None:
        raise ScreenshotError(f"headless Chromium not found; {_INSTALL_HINT}")
    target = directory / SCREENSHOT
    with tempfile.TemporaryDirectory(prefix="isokit-chromium-") as profile_dir:
        # Chromium writes the PNG itself; give it a temporary name so a crash leaves nothing
        # under the final one.
        partial = Path(profile_dir) / SCREENSHOT
        cmd = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile_dir}/profile",
            f"--screenshot={partial}",
            f"--window-size={width},{height}",
            page.as_uri(),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ScreenshotError(f"Chromium did not finish within {timeout:.0f} s") from None
        if not partial.is_file() or partial.stat().st_size == 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ScreenshotError(
                f"Chromium exited with code {proc.returncode} and wrote no screenshot: {tail[0]}"
            )
        write_atomic(target, partial.read_bytes())
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m isokit.report.screenshot",
        description="Render DIR/report.html in headless Chromium and save DIR/screenshot.png.",
    )
    parser.add_argument("directory", metavar="DIR", help="a report directory (holds report.html)")
    parser.add_argument("--width", type=int, default=1280, help="window width in px")
    parser.add_argument("--height", type=int, default=4000, help="window height in px")
    args = parser.parse_args(argv)
    try:
        path = screenshot(args.directory, width=args.width, height=args.height)
    except ScreenshotError as exc:
        print(f"isokit screenshot: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
