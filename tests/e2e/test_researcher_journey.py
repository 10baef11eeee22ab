"""A researcher's first session, in a real headless Chromium: hub -> ESCAPE IAM login -> JupyterLab -> the Rucio
sidebar finds the demo data -> a notebook reads a file through the storage mount. Screenshots are saved under
test-artifacts/ (the CI keeps them)."""

import pytest
from playwright.sync_api import expect, sync_playwright

from devstack.rucio_seed import DEMO_SCOPE
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

pytestmark = pytest.mark.e2e


@pytest.fixture
def page():
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            yield page
        finally:
            page.screenshot(path=str(ARTIFACTS / "last-page.png"))
            browser.close()


@pytest.fixture
def stop_alices_server(hub_admin):
    yield
    hub_admin.delete(f"{hub_admin.api}/users/alice/server", timeout=60)


def test_alice_logs_in_finds_the_demo_data_and_reads_it(page, hub, hub_admin, rucio, root_client, stop_alices_server):
    (catalogue,) = [
        f for f in root_client.list_files(DEMO_SCOPE, "higgs-candidates") if f["name"] == "higgs-candidates.00.root"
    ]
    page.goto(f"{hub.url}/hub/login")
    page.get_by_text("Sign in with ESCAPE IAM").click()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-pass")
    page.get_by_role("button", name="Sign in").click()
    # The spawn page offers the environments; alice picks the ROOT one.
    expect(page.get_by_text("Choose an environment")).to_be_visible()
    page.get_by_label("ROOT files (uproot, awkward)").check()
    page.screenshot(path=str(ARTIFACTS / "00-pick-environment.png"))
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/user/alice/lab**", timeout=120_000)
    page.locator("#jp-main-dock-panel").wait_for(timeout=120_000)
    page.screenshot(path=str(ARTIFACTS / "01-jupyterlab.png"))

    page.locator('li.lm-TabBar-tab[data-id="rucio-jupyterlab:panel"]').click()
    search = page.get_by_placeholder("Enter a Data Identifier (DID)")
    search.fill(f"{DEMO_SCOPE}:*")
    search.press("Enter")
    page.screenshot(path=str(ARTIFACTS / "02-rucio-search.png"))
    for dataset in ("cosmic-rays-small", "higgs-candidates"):  # found without any Validate click
        expect(page.get_by_text(f"{DEMO_SCOPE}:{dataset}", exact=True)).to_be_visible()
    # The extension's icons render from the locally installed font, not as their names.
    page.wait_for_function("document.fonts.check('24px \"Material Icons\"')")
    icon = page.locator(".material-icons").first
    assert icon.evaluate("e => getComputedStyle(e).fontFamily").strip("'\"") == "Material Icons"
    assert icon.bounding_box()["width"] < 40, "the icon is drawn as a word, not a glyph"
    page.screenshot(path=str(ARTIFACTS / "03-rucio-results.png"))

    # A notebook reads a file of the dataset through the storage mount.
    page.get_by_role("button", name="No", exact=True).click()  # JupyterLab's news prompt
    # The launcher offers the environment's kernels; the ROOT one opens a notebook.
    page.get_by_role("tab", name="Launcher").click()
    page.locator('.jp-LauncherCard[title="Python 3 (ROOT files: uproot)"]').first.click()
    expect(page.get_by_text("Python 3 (ROOT files: uproot) | Idle")).to_be_visible(timeout=90_000)
    cell = page.locator(".jp-Notebook .jp-Cell .cm-content").first
    cell.click()
    cell.type(
        "import os, glob, zlib, uproot\n"
        "mount = os.environ['RUCIO_RSE_MOUNT_PATH']\n"
        f"path = glob.glob(mount + '/{DEMO_SCOPE}/*/*/higgs-candidates.00.root')[0]\n"
        "data = open(path, 'rb').read()\n"
        "print('read', len(data), 'bytes, adler32', format(zlib.adler32(data), '08x'), 'with uproot', "
        "uproot.__version__)"
    )
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output").first
    expect(output).to_contain_text(
        f"read {catalogue['bytes']} bytes, adler32 {catalogue['adler32']} with uproot", timeout=90_000
    )
    page.screenshot(path=str(ARTIFACTS / "04-notebook-reads-the-mount.png"))
