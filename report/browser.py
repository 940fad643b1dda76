"""Open a report the way a person does, in headless Chromium (Debian's `chromium`, driven by Playwright without its
own browser download): take a full-page screenshot, list broken images and console errors.

Used by the browser test and by docs/make_report_example.py. Needs `pip install playwright` and /usr/bin/chromium
(`apt-get install chromium`); nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("GANINV_CHROMIUM", "/usr/bin/chromium")
# Offline and as root: no sandbox (root), and no background connections this network refuses.
CHROMIUM_ARGS = ("--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync")
# Every <img>, with whether it decoded to a non-empty picture.
_IMAGES_JS = ("Array.from(document.images).map(i => ({src: i.getAttribute('src'), ok: i.complete && "
              "i.naturalWidth > 0 && i.naturalHeight > 0}))")


class BrowserUnavailable(RuntimeError):
    """Chromium or Playwright is not installed."""


@dataclass
class PageCheck:
    """What the page showed: its title, its images (src -> decoded), console errors, failed requests."""

    url: str
    title: str = ""
    images: dict[str, bool] = field(default_factory=dict)
    console_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    screenshot: str | None = None

    @property
    def broken_images(self) -> list[str]:
        return [src for src, ok in self.images.items() if not ok]


def browser_unavailable_reason() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not found: apt-get install -y chromium (or set GANINV_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install playwright; its browsers are not needed)"
    return None


def open_report(path: str | os.PathLike[str], *, screenshot: str | os.PathLike[str] | None = None,
                width: int = 1280, timeout_s: float = 60) -> PageCheck:
    """Loads `path` (an HTML file) over file:// in headless Chromium; optionally saves a full-page PNG screenshot."""
    reason = browser_unavailable_reason()
    if reason is not None:
        raise BrowserUnavailable(reason)
    from playwright.sync_api import sync_playwright

    url = Path(path).resolve().as_uri()
    check = PageCheck(url=url)
    profile = tempfile.mkdtemp(prefix="ganinv-chromium-")
    try:
        with sync_playwright() as p:
            context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=list(CHROMIUM_ARGS),
                                                           headless=True, viewport={"width": width, "height": 900})
            page = context.new_page()
            page.on("console", lambda m: check.console_errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: check.console_errors.append(f"uncaught: {e}"))
            page.on("requestfailed", lambda r: check.failed_requests.append(f"{r.url}: {r.failure}"))
            page.goto(url, wait_until="load", timeout=timeout_s * 1000)
            check.title = page.title()
            check.images = {item["src"]: item["ok"] for item in page.evaluate(_IMAGES_JS)}
            if screenshot is not None:
                page.screenshot(path=str(screenshot), full_page=True)
                check.screenshot = str(screenshot)
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return check
