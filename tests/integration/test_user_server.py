"""A researcher's server as the hub spawns it: token files, the Rucio extension without Validate, the rucio CLI.

Real hub, real dev IAM, real Rucio; the user's JupyterLab (with rucio-jupyterlab) runs from .venvs/singleuser.
"""

import stat
import subprocess
from pathlib import Path

import jwt
import pytest

from devstack.hub_client import hub_login, process_environ, start_server
from devstack.ports import wait_for
from devstack.rucio_seed import DEMO_SCOPE
from devstack.settings import VENVS


@pytest.fixture(scope="module")
def alice(hub, hub_admin):
    """Alice logged in (browser session) with her server running; yields (browser, server environment)."""
    browser, _ = hub_login(hub, "alice", "alice-pass")
    env = process_environ(start_server(hub_admin, "alice"))
    wait_for(lambda: Path(env["BEARER_TOKEN_FILE"]).exists(), timeout=30, what="alice's token files")
    # Entering the server from the browser runs the hub -> server OAuth handshake, like opening JupyterLab.
    lab = browser.get(f"{hub.url}/user/alice/lab", timeout=60)
    assert lab.status_code == 200, lab.status_code
    yield browser, env
    hub_admin.delete(f"{hub_admin.api}/users/alice/server", timeout=60)


def test_token_files_are_private_single_line_and_for_the_right_audience(alice, iam, hub):
    _, env = alice
    rucio_file = Path(env["BEARER_TOKEN_FILE"])
    eos_file = Path(env["OAUTH2_TOKEN"].removeprefix("FILE:"))
    assert env["OAUTH2_TOKEN"].startswith("FILE:")
    assert stat.S_IMODE(rucio_file.stat().st_mode) == 0o600
    assert "\n" not in rucio_file.read_text()
    assert stat.S_IMODE(rucio_file.parent.stat().st_mode) == 0o700
    assert jwt.decode(rucio_file.read_text(), options={"verify_signature": False})["aud"] == "rucio"
    # EOS splits its token line on every ':' and calls https://<host>/<path> on 443: the dev IAM's userinfo endpoint
    # has a port, so no EOS file can be right here, and the server says why (the line format: unit tests).
    assert iam.url.rsplit(":", 1)[1].isdigit() and not eos_file.exists()
    wait_for(lambda: "EOS token file" in Path(hub.process.log_path).read_text(), timeout=30, what="the EOS line")


def test_the_rucio_cli_in_the_server_works_with_the_token_file(alice):
    _, env = alice
    cli_env = {k: v for k, v in env.items() if k.startswith(("RUCIO_", "BEARER_TOKEN_FILE", "PATH", "HOME"))}
    result = subprocess.run(
        [str(VENVS / "singleuser" / "bin" / "rucio"), "did", "list", f"{DEMO_SCOPE}:*"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "higgs-candidates" in result.stdout and "cosmic-rays-small" in result.stdout
    whoami = subprocess.run(
        [str(VENVS / "singleuser" / "bin" / "rucio"), "whoami"], env=cli_env, capture_output=True, text=True, timeout=60
    )
    assert "alice" in whoami.stdout


def _ext(browser, hub, path: str, **params):
    return browser.get(f"{hub.url}/user/alice/rucio-jupyterlab/{path}", params=params, timeout=60)


def test_the_rucio_sidebar_api_works_without_validate(alice, hub):
    browser, _ = alice
    instances = _ext(browser, hub, "instances")
    assert instances.status_code == 200
    body = instances.json()
    assert body["active_instance"] == "escape" and body["auth_type"] == "oidc"
    found = _ext(browser, hub, "did-search", namespace="escape", did=f"{DEMO_SCOPE}:*", type="all")
    assert found.status_code == 200, found.text
    assert {"higgs-candidates", "cosmic-rays-small"} <= {d["did"].split(":")[1] for d in found.json()}
    files = _ext(browser, hub, "files", namespace="escape", did=f"{DEMO_SCOPE}:higgs-candidates")
    assert files.status_code == 200, files.text
    assert len(files.json()) == 3

    # Replica mode: the dataset is already on the mounted RSE, at local paths a notebook can open.
    def details():
        answer = _ext(browser, hub, "did", namespace="escape", did=f"{DEMO_SCOPE}:higgs-candidates")
        assert answer.status_code == 200, answer.text
        entries = answer.json()
        return entries if entries and all(e["status"] == "OK" for e in entries) else None

    entries = wait_for(details, timeout=60, what="replica details of the demo dataset")
    assert len(entries) == 3
    for entry in entries:
        path = Path(entry["path"])
        assert path.is_file() and path.stat().st_size == entry["size"]


def test_the_server_never_loads_the_hubs_database_layer(alice, hub, hub_admin):
    """singleuser.lean_start: after JupyterLab and the sidebar served, SQLAlchemy's engine (whose compiled modules
    would be in the process's memory map) never came into the server; it cost 0.5 s of CPU per start."""
    browser, _ = alice
    assert browser.get(f"{hub.url}/user/alice/lab", timeout=60).status_code == 200
    assert _ext(browser, hub, "instances").status_code == 200
    pid = hub_admin.get(f"{hub_admin.api}/users/alice", timeout=30).json()["servers"][""]["state"]["pid"]
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "/site-packages/zmq/" in maps  # the map does show the compiled modules the server loaded
    assert "/site-packages/sqlalchemy/engine/" not in maps


def test_nothing_token_like_in_the_servers_environment(alice):
    _, env = alice
    tokens = [Path(env["BEARER_TOKEN_FILE"]).read_text()]
    for name, value in env.items():
        if name == "JUPYTERHUB_API_TOKEN":
            continue  # the server's credential towards the hub, not a Data Lake token
        assert not any(t in value for t in tokens), name
        assert not value.startswith("eyJ"), f"{name} looks like a JWT"


def test_rucio_down_gives_the_sidebar_an_error_message_not_a_silent_failure(alice, hub, rucio):
    browser, _ = alice
    params = {"namespace": "escape", "did": f"{DEMO_SCOPE}:higgs*", "type": "collection"}
    rucio.stop()
    try:
        answer = _ext(browser, hub, "did-search", **params)
        assert answer.status_code >= 400
        assert answer.json()["error"], "the sidebar needs a message to show"
    finally:
        rucio.start()
    assert _ext(browser, hub, "did-search", **params).status_code == 200


READ_THROUGH_CACHE = """
from rucio.client import Client
from rucio.common.client import detect_client_location
[r] = Client().list_replicas([{"scope": "escape_demo", "name": "higgs-candidates.00.root"}], schemes=["root"],
                             client_location=detect_client_location())
print(r["rses"]["EULAKE-1"][0])
"""


def test_rucio_clients_in_the_server_get_pfns_through_the_sites_xcache_and_can_read_them(alice, cache_layer, tmp_path):
    _, env = alice
    xr = cache_layer.xrootd
    assert env["SITE_NAME"] == "LOCAL"
    result = subprocess.run(
        [str(VENVS / "singleuser" / "bin" / "python"), "-c", READ_THROUGH_CACHE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    pfn = result.stdout.strip()
    assert pfn.startswith(f"root://127.0.0.1:{xr.cache_port}//root://127.0.0.1:{xr.origin_port}//EULAKE-1/")
    copy = subprocess.run(
        ["xrdcp", "--nopbar", pfn, str(tmp_path / "higgs.root")], capture_output=True, text=True, timeout=60
    )
    assert copy.returncode == 0, copy.stderr
    on_storage = cache_layer.settings.state_dir / "rses" / pfn.split(f":{xr.origin_port}//", 1)[1]
    assert (tmp_path / "higgs.root").read_bytes() == on_storage.read_bytes()
