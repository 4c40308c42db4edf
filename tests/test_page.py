"""The operations page in headless Chromium: sign in, upload, run, watch the steps, download.

Drives Debian's ``/usr/bin/chromium`` through Playwright without downloading a browser, and
saves a screenshot under ``test-artifacts/``.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.apiserver import REPO_ROOT, ApiServer, start_server, stop_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
ARTIFACTS = REPO_ROOT / "test-artifacts"
MONTH = "2020-10"

pytestmark = [pytest.mark.browser, pytest.mark.slow]
playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    running = start_server(tmp_path_factory.mktemp("page") / "home")
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture
def browser_page(server: ApiServer):
    """A Chromium page that may reach only the test server; yields (page, blocked, errors)."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium package")
    profile = Path(tempfile.mkdtemp(prefix="creditflow-chromium-"))
    blocked: list[str] = []
    errors: list[str] = []
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            accept_downloads=True, viewport={"width": 1280, "height": 1000},
        )

        def only_local(route) -> None:
            if route.request.url.startswith(server.url) or route.request.url.startswith("blob:"):
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        page = context.new_page()
        page.on("console", lambda message: errors.append(message.text)
                if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        try:
            yield page, blocked, errors
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


def upload_through_page(page, path: Path, month: str) -> str:
    page.fill("#upload-month", month)
    page.set_input_files("#upload-file", str(path))
    page.click("#upload-submit")
    outcome = page.locator("#upload-result .badge").first
    outcome.wait_for(timeout=120_000)
    return outcome.inner_text()


def test_page_upload_run_download(server: ApiServer, browser_page, real_files: list[Path],
                                  tmp_path: Path):
    page, blocked, errors = browser_page
    page.goto(server.url + "/")

    page.fill("#token-input", "not-a-token")
    page.click("#token-save")
    page.wait_for_selector("#token-error:has-text('invalid or revoked token')")
    assert errors == ["Failed to load resource: the server responded with a status of 401 "
                      "(Unauthorized)"]
    errors.clear()

    page.fill("#token-input", server.tokens["operator"])
    page.click("#token-save")
    page.wait_for_selector("#whoami:has-text('test-operator (operator)')")
    assert page.evaluate("sessionStorage.getItem('creditflow.token')") == server.tokens["operator"]

    assert upload_through_page(page, real_files[0], "history") == "loaded"
    assert upload_through_page(page, real_files[1], MONTH) == "loaded"
    assert "1000" in page.inner_text("#upload-result")
    page.wait_for_selector(f"#months-table tr[data-month='{MONTH}']")

    assert page.input_value("#run-month") == MONTH
    page.click("#run-submit")
    page.wait_for_selector("#run-status[data-status='running'], #run-status[data-status='queued']")
    page.wait_for_selector("#run-steps li[data-status='succeeded']", timeout=600_000)
    finished = "#run-status[data-status='succeeded'], #run-status[data-status='failed']"
    page.wait_for_selector(finished, timeout=600_000)
    assert page.get_attribute("#run-status", "data-status") == "succeeded", \
        page.inner_text("#run-status")
    assert "null" not in page.inner_text("#run-status")
    for step in ("land", "gate", "build", "train", "score", "export"):
        assert page.get_attribute(f"#run-steps li[data-step='{step}']", "data-status") == \
            "succeeded", step

    # The page loads the month's summary when the run succeeds.
    page.wait_for_selector("#chart-decisions svg rect")
    decision_bars = page.locator("#chart-decisions svg rect")
    counts = {decision_bars.nth(i).get_attribute("data-label"):
              int(decision_bars.nth(i).get_attribute("data-value"))
              for i in range(decision_bars.count())}
    score_bars = page.locator("#chart-scores svg rect")
    histogram_total = sum(int(score_bars.nth(i).get_attribute("data-value"))
                          for i in range(score_bars.count()))

    with page.expect_download() as download_info:
        page.click("#download-csv")
    download = download_info.value
    assert download.suggested_filename == f"predictions_{MONTH}.csv"
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)

    with page.context.expect_page() as report_info:
        page.click("#open-report")
    report_page = report_info.value
    report_page.wait_for_load_state()
    assert report_page.title() == f"creditflow monitoring report {MONTH}"
    report_page.close()

    page.wait_for_selector(f"#runs-table td:has-text('{MONTH}')")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "api-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    print(f"screenshot of the operations page: {screenshot}")

    with duckdb.connect(str(server.settings.warehouse), read_only=True) as connection:
        expected = connection.execute(
            "select * from predictions where score_month = ? order by sk_id_curr", [MONTH]).df()
    downloaded = pd.read_csv(io.StringIO(saved.read_text(encoding="utf-8")))
    downloaded = downloaded.sort_values("sk_id_curr").reset_index(drop=True)
    assert len(downloaded) == len(expected) == 1000
    assert downloaded["sk_id_curr"].tolist() == expected["sk_id_curr"].tolist()
    assert downloaded["default_probability"].tolist() == expected["default_probability"].tolist()
    assert downloaded["decision"].tolist() == expected["decision"].tolist()
    assert counts == {d: int((expected["decision"] == d).sum())
                      for d in ("approve", "review", "decline")}
    assert histogram_total == 1000
    assert blocked == []
    assert errors == []


def test_page_shows_rejection_readably(server: ApiServer, browser_page, real_files: list[Path],
                                       tmp_path: Path):
    page, blocked, errors = browser_page
    lines = real_files[2].read_text(encoding="utf-8").splitlines()
    column = lines[0].split(",").index("DAYS_BIRTH")
    rows = []
    for number, line in enumerate(lines[1:]):
        cells = line.split(",")
        if number < 2:
            cells[column] = "yesterday"
        rows.append(",".join(cells))
    broken = tmp_path / "november.csv"
    broken.write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")

    page.goto(server.url + "/")
    page.fill("#token-input", server.tokens["operator"])
    page.click("#token-save")
    page.wait_for_selector("#whoami:has-text('test-operator')")
    assert upload_through_page(page, broken, "2020-11") == "rejected"
    findings = page.inner_text("#upload-result table")
    assert "DAYS_BIRTH" in findings
    assert "yesterday" in findings
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#upload-result").screenshot(path=str(ARTIFACTS / "api-page-rejected.png"))
    assert blocked == []
    # The rejected upload's 422 is the one console error Chromium logs for this page.
    assert all("422" in error for error in errors), errors
