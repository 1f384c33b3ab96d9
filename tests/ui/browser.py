"""Playwright driving Debian's chromium (Playwright's own browser download is not
available here), and screenshots for docs/ui.md."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "ui"
    if os.environ.get("ZOLL_UI_SCREENSHOTS")
    else Path(tempfile.gettempdir()) / "zoll-ui-screenshots"
)
"""docs/ui/ when refreshing the documentation (ZOLL_UI_SCREENSHOTS=1), so an ordinary
test run leaves the work tree alone."""
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def shot(page: Page, name: str, *, full_page: bool = True) -> Path:
    """A screenshot for the docs (docs/ui/<name>.png)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    return path


async def shot_of(page: Page, selector: str, name: str) -> Path:
    """A screenshot of one element (docs/ui/<name>.png)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    await page.locator(selector).first.screenshot(path=str(path))
    return path
