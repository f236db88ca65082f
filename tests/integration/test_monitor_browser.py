"""The monitor's page in a real browser: headless Chromium (Debian's, driven by Playwright)
loads it against a running cluster, sees nodes and jobs appear and change, cancels a running job
with its button and sees it cancelled; sees each job's function, a failed job's exception, the
per-function summary and the chart's axes, filters and searches the jobs, and opens a failed
job's traceback under its row.  Screenshots are saved under the test's tmp_path and under
test-artifacts/ (git-ignored), and their paths printed."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import pytest

from rdispy.errors import JobTerminated
from tests.conftest import ROOT
from tests.helpers import DEADLINE, executor, explode, greet, square

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install chromium; .ci/run does it as root)",
        allow_module_level=True,
    )


def test_page_shows_the_cluster_and_cancels_a_running_job(redis_url, cluster, start_worker):
    start_worker(redis_url, 2, "browsed")
    timeout_ms = DEADLINE * 1000
    with executor(redis_url, cluster=cluster, monitor=0) as ex, sync_api.sync_playwright() as pw:
        url = ex.monitor_url
        assert url is not None
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            node = page.locator('#nodes tr[data-node="browsed"]')
            node.wait_for(timeout=timeout_ms)
            assert "direct" in node.inner_text()
            assert page.locator("#tot-nodes").inner_text() == "1"

            quick = ex.submit(abs, -3)
            assert quick.result(30) == 3
            page.locator(f'#jobs tr[data-job="{quick.job_id}"][data-state="finished"]').wait_for(
                timeout=timeout_ms
            )
            long_jobs = [ex.submit(time.sleep, 60) for _ in range(3)]
            victim, *others = long_jobs
            running = page.locator(f'#jobs tr[data-job="{victim.job_id}"][data-state="running"]')
            running.wait_for(timeout=timeout_ms)
            page.locator('#jobs tr[data-state="queued"]').first.wait_for(timeout=timeout_ms)
            page.locator(".bar i").first.wait_for(timeout=timeout_ms)

            running.locator("button.cancel").click()
            cancelled = f'#jobs tr[data-job="{victim.job_id}"][data-state="cancelled"]'
            page.locator(cancelled).wait_for(timeout=timeout_ms)
            assert isinstance(victim.exception(30), JobTerminated)

            page.locator(f'#jobs tr[data-job="{victim.job_id}"] a.jid').click()
            page.locator("#attempts tbody tr").first.wait_for(timeout=timeout_ms)
            assert "cancelled" in page.locator("#attempts").inner_text()

            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "monitor.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"monitor screenshot: {shot}")
            assert Path(shot).stat().st_size > 10_000
        finally:
            browser.close()
        for future in others:  # so that the node need not wait for them
            request = urllib.request.Request(
                f"{url}api/jobs/{future.job_id}/cancel", method="POST", headers={"X-Rdispy": "1"}
            )
            urllib.request.urlopen(request, timeout=30).close()


def _shoot(page, tmp_path: Path, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    (ARTIFACTS / name).write_bytes(shot.read_bytes())
    print(f"monitor screenshot: {shot} (and {ARTIFACTS / name})")
    assert shot.stat().st_size > 10_000
    return shot


def test_page_names_functions_shows_failures_filters_and_opens_the_traceback_inline(
    redis_url, cluster, start_worker, tmp_path
):
    start_worker(redis_url, 2, "shown")
    timeout_ms = DEADLINE * 1000
    square_name, greet_name = f"{square.__module__}.square", f"{greet.__module__}.greet"
    explode_name = f"{explode.__module__}.explode"
    with executor(redis_url, cluster=cluster, monitor=0) as ex, sync_api.sync_playwright() as pw:
        url = ex.monitor_url
        assert url is not None
        squares = [ex.submit(square, i) for i in range(3)]
        greetings = [ex.submit(greet, n) for n in ("ann", "bob")]
        failing = ex.submit(explode)
        assert [f.result(30) for f in squares] == [0, 1, 4]
        assert [f.result(30) for f in greetings] == ["hello ann", "hello bob"]
        with pytest.raises(ValueError, match="boom"):
            failing.result(30)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            job_rows = page.locator("#jobs tbody tr.job")
            failed_row = page.locator(f'#jobs tr[data-job="{failing.job_id}"][data-state="failed"]')
            failed_row.wait_for(timeout=timeout_ms)
            # the function of every job, the failed one's exception in its row
            assert explode_name in failed_row.inner_text()
            assert "ValueError: boom" in failed_row.locator("td.err").inner_text()
            page.locator(f'#jobs tr[data-job="{greetings[0].job_id}"]').wait_for(timeout=timeout_ms)
            shown = job_rows.locator("td.fn").all_inner_texts()
            assert shown.count(square_name) == 3 and shown.count(greet_name) == 2
            # the per-function summary, and the chart's axes with their units
            summary = page.locator(f'#functions tr[data-function="{explode_name}"]')
            summary.wait_for(timeout=timeout_ms)
            cells = summary.locator("td").all_inner_texts()
            assert cells[:5] == [explode_name, "1", "0", "1", "0"]
            square_cells = page.locator(f'#functions tr[data-function="{square_name}"] td')
            assert square_cells.all_inner_texts()[1:4] == ["3", "3", "0"]
            assert page.locator("#y-axis-label").text_content() == "jobs/s"
            assert page.locator("#x-axis-label").text_content() == "time (s ago)"
            assert page.locator("#chart text.xtick").first.text_content() == "now"
            _shoot(page, tmp_path, "monitor-jobs.png")

            # filter by state: only the failed job is left
            page.select_option("#f-state", "failed")
            page.wait_for_function(
                "() => { const rows = [...document.querySelectorAll('#jobs tbody tr.job')];"
                " return rows.length === 1 && rows[0].dataset.state === 'failed'; }",
                timeout=timeout_ms,
            )
            assert "state=failed" in page.url
            _shoot(page, tmp_path, "monitor-filter-failed.png")
            page.select_option("#f-state", "")
            # filter by function
            page.select_option("#f-function", greet_name)
            page.wait_for_function(
                "(name) => { const rows = [...document.querySelectorAll('#jobs tbody tr.job')];"
                " return rows.length === 2 && rows.every((r) => r.dataset.function === name); }",
                arg=greet_name,
                timeout=timeout_ms,
            )
            page.locator("#f-clear").click()
            # search by id
            page.fill("#f-search", squares[1].job_id)
            page.wait_for_function(
                "(id) => { const rows = [...document.querySelectorAll('#jobs tbody tr.job')];"
                " return rows.length === 1 && rows[0].dataset.job === id; }",
                arg=squares[1].job_id,
                timeout=timeout_ms,
            )
            page.locator("#f-clear").click()
            page.wait_for_function(
                "() => document.querySelectorAll('#jobs tbody tr.job').length === 6",
                timeout=timeout_ms,
            )

            # the failed job's detail opens right under its row, with the traceback
            failed_row.click()
            traceback = page.locator("#jobs tr.detail-row pre.traceback")
            traceback.wait_for(timeout=timeout_ms)
            text = traceback.inner_text()
            assert text.startswith("Traceback (most recent call last):")
            assert 'raise ValueError("boom")' in text and text.rstrip().endswith("ValueError: boom")
            above = page.evaluate(
                "() => document.querySelector('#jobs tr.detail-row').previousElementSibling"
                ".dataset.job"
            )
            assert above == failing.job_id
            row_box, detail_box = failed_row.bounding_box(), traceback.bounding_box()
            assert row_box is not None and detail_box is not None
            assert 0 <= detail_box["y"] - (row_box["y"] + row_box["height"]) < 400
            assert page.locator("#detail-function").inner_text() == explode_name
            assert page.locator("#detail-exception").inner_text() == "ValueError: boom"
            time.sleep(1.5)  # a refresh or two later it is still open, still under its row
            assert traceback.is_visible()
            failed_row.scroll_into_view_if_needed()
            _shoot(page, tmp_path, "monitor-traceback.png")
            failed_row.click()  # a second click closes it
            page.locator("#jobs tr.detail-row").wait_for(state="detached", timeout=timeout_ms)
        finally:
            browser.close()
