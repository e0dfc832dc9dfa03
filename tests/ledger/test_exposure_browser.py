"""A data-protection officer opens the HTML exposure report in a browser with no network: the charts are drawn,
one bar per day and per practice, and the page asks for nothing outside itself.

Debian's Chromium (/usr/bin/chromium), driven by Playwright from a thread (its sync API cannot run inside the
test's event loop); every request that is not the file itself is blocked and recorded."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.http.test_graphiql_browser import CHROMIUM, CHROMIUM_ARGS

# The fixture of partners reading practices A and B, with the fixtures it takes.
from tests.ledger.test_exposure import owners, readings, second_key  # noqa: F401

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the browser's side is the same


def _open_offline(page_file: Path, screenshot: Path) -> dict[str, object]:
    """What the browser drew: each chart's bars and their sizes, requests it tried, policy violations."""
    outside: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
        url = page_file.as_uri()

        def only_the_file(route):
            if route.request.url == url:
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_the_file)
        page = context.new_page()
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(url)
        drawn = {
            chart: [
                page.locator(f"#{chart} rect.bar").nth(i).bounding_box()
                for i in range(page.locator(f"#{chart} rect.bar").count())
            ]
            for chart in ("patients-per-day", "patients-per-practice")
        }
        page.screenshot(path=str(screenshot), full_page=True)
        browser.close()
    return {"drawn": drawn, "outside": outside, "problems": problems}


async def test_the_html_report_draws_its_charts_offline(readings, cli, tmp_path):  # noqa: F811
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: apt-get install chromium (.ci/run installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    since, _ = readings
    page = tmp_path / "exposure.html"
    result = cli("exposure", "--partner", "full", "--since", since.isoformat(), "--format", "html", "--output", page)
    assert result.exit_code == 0, result.output
    seen = await asyncio.to_thread(_open_offline, page, tmp_path / "exposure.png")
    per_day, per_practice = seen["drawn"]["patients-per-day"], seen["drawn"]["patients-per-practice"]
    assert len(per_day) == 1 and len(per_practice) == 1  # one day, one practice (A) in the fixture's readings
    assert all(box is not None and box["width"] > 0 and box["height"] > 0 for box in per_day + per_practice)
    assert seen["outside"] == [] and seen["problems"] == []
