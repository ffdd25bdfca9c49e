"""The report in a real browser: headless Chromium (Debian's package) driven by Playwright for Python.

Opens ``report/index.html`` of a five-year run from disk and checks what a reader does: the funnel plot
loads, the trust table has one row per trust of the period, typing a trust code leaves only that trust,
the trust's page opens from its row, and no request leaves the machine.  Screenshots go to
``out/test/screenshots/``.  Chromium is installed by ``scripts/browser.sh`` where it is missing; the test
skips, saying why, where it cannot be.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "out" / "test" / "screenshots"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        proc = subprocess.run(["bash", str(ROOT / "scripts" / "browser.sh")], capture_output=True, text=True,
                              timeout=900)
        if proc.returncode != 0 or not CHROMIUM.exists():
            pytest.skip(f"headless Chromium unavailable, browser test not run: {proc.stderr.strip()[-400:]}")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium):
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is a test dependency")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(chromium), args=LAUNCH_ARGS)
        yield b
        b.close()


def _page(browser, requests: list[str]):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("request", lambda r: requests.append(r.url))
    return page


def test_report_in_headless_chromium(browser, report_run):
    out, summary = report_run
    index = out / "report" / "index.html"
    trusts = pd.read_csv(out / "shmi_trust.csv", dtype={"PERIOD": str})
    period = summary["periods"][-1]["period"]
    codes = sorted(trusts.loc[trusts["PERIOD"] == period, "PROVIDER_CODE"])
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    requests: list[str] = []
    page = _page(browser, requests)
    page.goto(index.as_uri())
    page.wait_for_load_state("load")

    # the funnel plot of the period shown has loaded
    section = page.locator(f'section.period[data-period="{period}"]')
    assert section.is_visible()
    funnel = section.locator("figure img").first
    assert funnel.evaluate("img => img.complete && img.naturalWidth") > 0
    assert page.evaluate("Array.from(document.images).filter(i => !i.hidden && i.naturalWidth === 0).length") == 0
    page.screenshot(path=str(SCREENSHOTS / "index.png"))

    # one row per trust of the period, and only that period's table visible
    rows = section.locator("table.trusts tbody tr")
    assert rows.count() == len(codes)
    assert sorted(rows.evaluate_all("rs => rs.filter(r => !r.hidden).map(r => r.dataset.code)")) == codes
    assert page.locator("section.period:not([hidden])").count() == 1

    # typing a trust code into the search leaves only that trust
    code = codes[len(codes) // 2]
    page.fill("#trust-search", code)
    visible = rows.evaluate_all("rs => rs.filter(r => !r.hidden).map(r => r.dataset.code)")
    assert visible == [code]
    assert section.locator(".shown").inner_text().startswith("1 of")
    page.screenshot(path=str(SCREENSHOTS / "search.png"))

    # the keyboard sorts the table: Tab to a header button, Enter
    page.fill("#trust-search", "")
    header = section.locator("thead th").nth(7)
    assert header.inner_text().startswith("SHMI")
    header.locator("button").focus()
    page.keyboard.press("Enter")
    assert header.get_attribute("aria-sort") == "ascending"
    shmi = rows.evaluate_all("rs => rs.map(r => parseFloat(r.children[7].dataset.v))")
    numbers = [v for v in shmi if v == v]
    assert numbers == sorted(numbers)

    # another period from the select shows its own table
    first = summary["periods"][0]["period"]
    page.select_option("#period", first)
    assert page.locator(f'section.period[data-period="{first}"]').is_visible()
    assert not section.is_visible()
    page.select_option("#period", period)

    # the trust's page opens from its row
    page.fill("#trust-search", code)
    section.locator(f'tr[data-code="{code}"] a').click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/trusts/{code}.html")
    assert f"({code})" in page.locator("h1").inner_text()
    assert page.evaluate("Array.from(document.images).filter(i => i.naturalWidth === 0).length") == 0
    assert page.locator("table.periods tbody tr").count() == len(summary["periods"])
    page.screenshot(path=str(SCREENSHOTS / f"trust_{code}.png"), full_page=True)

    # nothing left the machine: every request was for a file of the report
    assert requests and all(u.startswith("file://") for u in requests), [u for u in requests
                                                                         if not u.startswith("file://")]
    page.close()
