"""Open a report in headless Chromium: did every figure render, were there JavaScript errors,
how long did it take. Used by the browser tests and ``bench/report_scale.py``.

Needs the ``playwright`` package (the ``dev`` extra) and a Chromium: ``$NAS_CHROMIUM``, or
``chromium`` / ``chromium-browser`` / ``google-chrome`` on the PATH (Debian: ``apt-get install
chromium``). Playwright drives it over the DevTools protocol; no browser download is needed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from nas.errors import NasError

BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """Path of a Chromium or Chrome executable, or None."""
    explicit = os.environ.get("NAS_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclasses.dataclass(frozen=True)
class PageCheck:
    """What a browser saw of a report page.

    Attributes:
        render_ms: from navigation start until every figure was drawn.
        errors: uncaught JavaScript errors and console errors, in order.
        figures: ids of the figures the page meant to draw.
        rendered: ids of the figures that have a drawn plot (an SVG or WebGL layer).
        screenshot: where the full-page screenshot was saved, if asked.
    """

    render_ms: float
    errors: tuple[str, ...]
    figures: tuple[str, ...]
    rendered: tuple[str, ...]
    screenshot: Path | None


def check_page(page_path: str | Path, *, screenshot: str | Path | None = None,
               width: int = 1440, height: int = 900, timeout_s: float = 60.0,
               executable: str | None = None) -> PageCheck:
    """Load ``page_path`` (a file or an http:// URL) in headless Chromium and wait until the
    report says every figure is drawn."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise NasError("checking a report in a browser needs playwright: pip install "
                       "'mobilevit-nas[dev]'") from None
    executable = executable or find_chromium()
    if executable is None:
        raise NasError("no Chromium found: install one (Debian: apt-get install chromium) or set "
                       "NAS_CHROMIUM")
    url = str(page_path)
    if "://" not in url:
        url = Path(page_path).resolve().as_uri()
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
            page.on("console", lambda msg: errors.append(f"console: {msg.text}")
                    if msg.type == "error" else None)
            page.goto(url)
            try:
                page.wait_for_function("window.nasReport && window.nasReport.rendered === true",
                                       timeout=timeout_s * 1000)
            except PlaywrightError as exc:
                raise NasError(f"{url}: the figures did not render within {timeout_s:g} s "
                               f"({str(exc).splitlines()[0]}; errors: {errors})") from None
            render_ms = float(page.evaluate("window.nasReport.ms"))
            figures = tuple(page.evaluate("window.nasReport.figures"))
            rendered = tuple(page.evaluate(
                """ids => ids.filter(id => {
                     const el = document.getElementById('fig-' + id);
                     return el && el._fullLayout && el.querySelector('svg.main-svg, canvas');
                   })""", list(figures)))
            shot = None
            if screenshot is not None:
                shot = Path(screenshot)
                shot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    return PageCheck(render_ms=render_ms, errors=tuple(errors), figures=figures,
                     rendered=rendered, screenshot=shot)
