"""The monitor's page in a real browser: headless Chromium (Debian's, driven by Playwright)
loads it against a running cluster, sees nodes and jobs appear and change, cancels a running job
with its button and sees it cancelled.  A screenshot is saved under test-artifacts/ (git-ignored)
and its path printed."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import pytest

from rdispy.errors import JobTerminated
from tests.conftest import ROOT
from tests.helpers import DEADLINE, executor

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
