"""The Dask JupyterLab extension's sidebar in a real headless Chromium, through the hub's proxy, offline: alice logs in
through the dev IAM, her server (base environment) opens JupyterLab, and the sidebar's "New" starts a Dask Gateway
cluster whose card, dashboard link and dashboard panels work. Every request the page and its frames make, web
sockets included, is recorded: none may go anywhere but 127.0.0.1. Screenshots go to test-artifacts/.

The stack's gateway allows alice two clusters, and the integration tests' `cluster` fixture may hold one of them in
the same session: this module makes one. Its cluster stops with alice's server at the end of the module, and the
module waits until the gateway has removed it, even when a check failed.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from devstack.ports import wait_for
from tests.e2e.browser import ARTIFACTS, start_lab

pytestmark = pytest.mark.e2e

SIDEBAR_TAB = 'li.lm-TabBar-tab[data-id="dask-dashboard-launcher"]'


@pytest.fixture(scope="module")
def seen():
    """Every URL the page, its frames and its workers asked for, and every web socket it opened."""
    return []


@pytest.fixture(scope="module")
def lab(browser, seen, hub, hub_admin, stack):
    """alice, logged in through the IAM, in JupyterLab of the base environment. At the end her server stops, which
    stops her clusters (the server as it exits, the gateway's server check otherwise): wait until the gateway has
    removed every cluster it made for her meanwhile."""
    clusters = stack.dask_gateway.dir / "clusters"
    before = set(clusters.iterdir())
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    context.on("request", lambda r: seen.append(r.url))
    page.on("websocket", lambda ws: seen.append(ws.url))
    try:
        start_lab(page, hub.url, "alice", "alice-pass", "base")
        yield page
    finally:
        page.screenshot(path=str(ARTIFACTS / "dask-last-page.png"))
        page.close()
        if "/user/alice/lab" in page.url:
            forget_workspace(context, hub.url)
        context.close()
        hub_admin.delete(f"{hub_admin.api}/users/alice/server", timeout=60)
        made = set(clusters.iterdir()) - before
        wait_for(lambda: not any(path.exists() for path in made), timeout=120, what="alice's Dask clusters to stop")


def forget_workspace(context, hub_url: str) -> None:
    """Remove alice's saved JupyterLab workspace (layout and sidebar state: the Dask sidebar's dashboard URL, open
    dashboard panels), so that JupyterLab in later tests does not reconnect to a cluster that is gone."""
    xsrf = next(c["value"] for c in context.cookies() if c["name"] == "_xsrf")
    workspace = f"{hub_url}/user/alice/lab/api/workspaces/default"
    answer = context.request.delete(workspace, headers={"X-XSRFToken": xsrf})
    assert answer.status in (204, 404), f"DELETE {workspace}: {answer.status} {answer.text()[:300]}"


def test_the_dask_sidebars_new_cluster_shows_its_dashboard_through_the_hub_offline(lab, hub, seen):
    tab = lab.locator(SIDEBAR_TAB)
    tab.wait_for()
    if "lm-mod-current" not in (tab.get_attribute("class") or ""):
        tab.click()
    sidebar = lab.locator(".dask-DaskSidebar")
    sidebar.get_by_role("button", name="NEW").click()

    # The cluster's card, with the gateway's dashboard link on the hub's own address (a path: browsers reach the
    # gateway through the hub's proxy, whatever address the server uses for it).
    card = sidebar.locator(".dask-ClusterListingItem")
    expect(card).to_have_count(1, timeout=180_000)
    link = card.locator(".dask-ClusterListingItem-link a")
    expect(link).to_have_text(re.compile(r"^/services/dask-gateway/clusters/[0-9a-f]+/status$"), timeout=60_000)
    lab.screenshot(path=str(ARTIFACTS / "dask-01-new-cluster.png"))

    # The sidebar connects to that dashboard by itself: its panel list is the dashboard's individual-plots.json,
    # fetched through the server's dashboard proxy (singleuser.dask_dashboard) from the gateway.
    panels = sidebar.locator(".dask-DashboardListing-item button")
    task_stream = panels.filter(has_text=re.compile("^Task Stream$"))
    expect(task_stream).to_be_enabled(timeout=60_000)
    expect(panels.filter(has_text=re.compile("^Progress$"))).to_be_enabled()
    expect(sidebar.get_by_text("Dashboard not connected")).to_have_count(0)
    lab.screenshot(path=str(ARTIFACTS / "dask-02-dashboard-panels.png"))

    # A panel shows the scheduler's live plot (its page, Bokeh's scripts, the plot's web socket).
    task_stream.click()
    frame = lab.locator(".dask-DaskDashboard-widget iframe")
    expect(frame).to_have_attribute("src", re.compile("/individual-task-stream$"))
    expect(frame.content_frame.locator("canvas").first).to_be_visible(timeout=60_000)
    sockets = [url for url in seen if urlsplit(url).scheme == "ws"]
    assert any("/individual-task-stream/" in url for url in sockets), sockets
    lab.screenshot(path=str(ARTIFACTS / "dask-03-task-stream.png"))

    # The card's Shutdown stops the cluster.
    card.get_by_role("button", name="SHUTDOWN").click()
    expect(card).to_have_count(0, timeout=120_000)

    elsewhere = sorted(
        {url for url in seen if urlsplit(url).scheme != "data" and urlsplit(url).hostname != "127.0.0.1"}
    )
    assert elsewhere == [], f"the page asked for more than 127.0.0.1: {elsewhere}"
