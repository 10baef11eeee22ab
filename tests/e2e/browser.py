"""What the browser tests share: headless Chromium on loopback only, a record of every request the page makes, and
the steps a researcher takes in JupyterLab (log in, open the Rucio sidebar, expand a dataset, run a cell)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Page, expect

from devstack.settings import REPO

ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Offline machine: no background traffic, no component downloads (see the env notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class Network:
    """Every request a page made that failed, answered >= 400 or left loopback (data:/blob: URLs stay local)."""

    failed: list[str] = field(default_factory=list)
    external: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("request", self._request)
        page.on("requestfailed", lambda r: self.failed.append(f"{r.method} {r.url}: {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and self.failed.append(f"{r.request.method} {r.url}: {r.status}"))

    def _request(self, request) -> None:
        url = urlsplit(request.url)
        if url.scheme in ("data", "blob", "about") or url.hostname in LOOPBACK:
            return
        self.external.append(request.url)

    def problems(self) -> list[str]:
        # A page navigated away while a request was in flight (a reload): the browser aborts it, nothing failed.
        failed = [f for f in self.failed if not f.endswith("net::ERR_ABORTED")]
        return failed + [f"left loopback: {url}" for url in self.external]


def log_in(page: Page, hub_url: str, user: str, password: str) -> None:
    page.goto(f"{hub_url}/hub/login")
    page.get_by_text("Sign in with ESCAPE IAM").click()
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def wait_for_lab(page: Page) -> None:
    page.locator("#jp-main-dock-panel").wait_for(timeout=120_000)


def start_lab(page: Page, hub_url: str, user: str, password: str, environment: str, screenshot: str = "") -> None:
    """Log `user` in through the IAM, pick `environment` (a profile's slug) on the spawn page, press Start and wait
    until JupyterLab is up; `screenshot`: a file name in ARTIFACTS for the spawn page before Start."""
    log_in(page, hub_url, user, password)
    expect(page.get_by_text("Choose an environment")).to_be_visible()
    page.locator(f'input[name="profile"][value="{environment}"]').check()
    if screenshot:
        page.screenshot(path=str(ARTIFACTS / screenshot))
    page.get_by_role("button", name="Start").click()
    page.wait_for_url(f"**/user/{user}/lab**", timeout=120_000)
    wait_for_lab(page)


def rucio_search(page: Page, query: str) -> None:
    """Open the Rucio sidebar (unless JupyterLab restored it open) and search `query`."""
    search = page.get_by_placeholder("Enter a Data Identifier (DID)")
    tab = page.locator('li.lm-TabBar-tab[data-id="rucio-jupyterlab:panel"]')
    tab.wait_for()
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    search.fill(query)
    search.press("Enter")


def expand(page: Page, did: str, within: float = 10.0) -> float:
    """Click a dataset in the search results; seconds until its details say "All files available"."""
    row = page.get_by_text(did, exact=True)
    row.wait_for()
    started = time.monotonic()
    row.click()
    page.get_by_text("All files available").first.wait_for(timeout=within * 1000)
    return time.monotonic() - started


def new_notebook(page: Page, kernel_title: str) -> None:
    """A new notebook from the launcher card of a kernel, idle."""
    page.get_by_role("menuitem", name="File").click()
    page.get_by_role("menuitem", name="New Launcher").click()
    page.locator(f'.jp-LauncherCard[title="{kernel_title}"]:visible').first.click()
    expect(page.get_by_text(f"{kernel_title} | Idle")).to_be_visible(timeout=90_000)


def run_cell(page: Page, code: str, expected: str | re.Pattern, timeout: float = 90.0):
    """Type `code` into the notebook's last cell, run it, and wait until its output contains `expected`."""
    cells = page.locator(".jp-Notebook .jp-Cell")
    cell = cells.nth(cells.count() - 1)  # pinned: running it adds a new last cell
    editor = cell.locator(".cm-content")
    editor.click()
    editor.type(code)
    page.keyboard.press("Shift+Enter")
    output = cell.locator(".jp-Cell-outputArea")
    expect(output).to_contain_text(expected, timeout=timeout * 1000)
    return output
