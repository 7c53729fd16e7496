"""The record page in a real browser (Debian's Chromium, headless): it renders, the replication
charts are drawn (the screenshot has their colours where a page without charts has none), and
the verdict-coloured rows and the failing check are there in the DOM the browser built.

Skipped where Chromium is not installed, unless PITH_REQUIRE_CHROMIUM=1 (CI installs it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import REPO
from .live import LiveServer, start_server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
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
FORGE = "GWT7BTE6QQH6QFVV76TWP23RSF"  # seed 000, with its committed replication records
NO_REPLICATIONS = "6BBITQMBZFXIS5BUMBL2H22W5T"  # seed 003: the server here loads FORGE's only

if CHROMIUM is None:
    if os.environ.get("PITH_REQUIRE_CHROMIUM") == "1":
        pytest.fail("PITH_REQUIRE_CHROMIUM=1 but no chromium on PATH", pytrace=False)
    pytest.skip("chromium is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    work = tmp_path_factory.mktemp("browser")
    # FORGE's committed records only, so another paper's page is one without replications
    results = work / "results"
    results.mkdir()
    for path in (REPO / "replication" / "results").glob("forge*.json"):
        shutil.copy(path, results / path.name)
    server = start_server(f"sqlite:///{work / 'pith.db'}", work, PITH_RESULTS_DIR=str(results))
    yield server
    server.stop()


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"  # fresh every run
    return subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        timeout=120,
        check=True,
    )


def _screenshot(tmp_path: Path, url: str) -> Path:
    out = tmp_path / f"shot-{url.rsplit('/', 1)[1]}.png"
    _chromium(tmp_path, "--window-size=1100,5000", f"--screenshot={out}", url)
    assert out.stat().st_size > 0
    return out


def _colourful_pixels(png: Path) -> int:
    """Pixels of a clear colour (charts, coloured rows), not the page's greys and white."""
    from PIL import Image

    with Image.open(png) as image:
        saturation = image.convert("RGB").convert("HSV").getchannel("S")
        return sum(saturation.histogram()[80:])  # saturation above ~0.31


def test_record_page_renders_with_charts(live: LiveServer, tmp_path: Path) -> None:
    dom = _chromium(tmp_path, "--dump-dom", f"{live.base_url}/pith/{FORGE}").stdout.decode()
    assert "FORGE" in dom
    assert dom.count('<figure aria-label="Speedup by size') >= 1
    assert 'class="verdict-replicated"' in dom and 'class="verdict-not_replicated"' in dom
    assert "check-failed" in dom  # run 2's speedup check failed, and is highlighted

    with_charts = _colourful_pixels(_screenshot(tmp_path, f"{live.base_url}/pith/{FORGE}"))
    without = _colourful_pixels(_screenshot(tmp_path, f"{live.base_url}/pith/{NO_REPLICATIONS}"))
    # the open chart group draws two charts of ~700x320 px with coloured lines and bars
    assert with_charts > 20_000, with_charts
    assert with_charts > 5 * max(without, 1000), (with_charts, without)


def test_index_page_renders_and_searches(live: LiveServer, tmp_path: Path) -> None:
    dom = _chromium(tmp_path, "--dump-dom", f"{live.base_url}/?q=FORGE").stdout.decode()
    assert 'name="q"' in dom and "1 result" in dom and f"/pith/{FORGE}" in dom
