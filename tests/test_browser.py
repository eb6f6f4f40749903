"""The HTML report, rendered by a real headless browser (Debian's chromium)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gradverify.cli import main

BROWSER = next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)),
    None,
)
#: What a headless browser needs on a machine with no network: no sandbox (CI runs as
#: root), no GPU, none of its background connections.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _artifacts(tmp_path: Path) -> Path:
    """Where the screenshot is kept: $GRADVERIFY_ARTIFACTS (CI sets it), else a tmp dir."""
    folder = Path(os.environ.get("GRADVERIFY_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _render(browser_args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    assert BROWSER is not None
    command = [BROWSER, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *browser_args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(BROWSER is None, reason="no headless browser: apt-get install chromium")
def test_the_browser_renders_every_check_of_the_html_report(tmp_path):
    report = tmp_path / "report.html"
    assert main(["check", "Affine", "ReluNoMask", "AffineNoTranspose", "--html", str(report)]) == 1
    dom = _render(["--dump-dom", report.as_uri()], tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert "3 check(s): 1 pass, 2 fail" in text
    for name in ("Affine", "ReluNoMask", "AffineNoTranspose"):
        assert f">{name}</a>" in text
    assert text.count('class="gradverify-heatmap"') == 2
    screenshot = _artifacts(tmp_path) / "report.png"
    shot = _render(
        [f"--screenshot={screenshot}", "--window-size=1000,1400", report.as_uri()], tmp_path
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000  # a blank page is ~7 KB
