"""Just-in-time onboarding in the real local data lake: a researcher an IAM administrator has just added to the
ESCAPE group (through the dev IAM's SCIM API) logs in to the hub for the first time, and her Rucio account,
identity and scope are there when the login returns - no scheduled sync has run (the test session runs none), no
operator did anything. Her server's Rucio sidebar and the rucio CLI in it then work with her own token.

The hub runs the real account sync for her `sub` (devstack.account_sync.onboard_command, the hub's
EscapeIAMAuthenticator.onboard_command), with the sync's own IAM client and Rucio credentials.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from devstack.hub_client import hub_login, process_environ, start_server
from devstack.ports import wait_for
from devstack.rucio_seed import DEMO_SCOPE
from devstack.settings import VENVS
from dlaas_sync.plan import identity
from tests.integration.test_account_sync import ScimAdmin


@pytest.fixture(scope="module")
def newcomer(iam):
    """A member added to escape/users a moment ago: never synced, never logged in."""
    admin = ScimAdmin(iam)
    user = admin.create_user(f"nora{uuid.uuid4().hex[:4]}")
    admin.membership("add", user)
    return user


@pytest.fixture(scope="module")
def first_login(hub, newcomer, root_client):
    name = newcomer["userName"]
    assert name not in {a["account"] for a in root_client.list_accounts()}  # nothing made her an account before
    browser, answer = hub_login(hub, name, newcomer["password"])
    assert answer.status_code == 302, answer.text
    return browser


def test_a_new_members_first_login_gives_her_a_rucio_account_identity_and_scope(
    first_login, newcomer, iam, root_client
):
    name = newcomer["userName"]
    account = root_client.get_account(name)
    assert account["status"] == "ACTIVE"
    identities = {i["identity"] for i in root_client.list_identities(name) if i["type"] == "OIDC"}
    assert identities == {identity(newcomer["id"], iam.issuer)}
    assert f"user.{name}" in root_client.list_scopes_for_account(name)


def test_her_sidebar_and_rucio_cli_work_on_her_first_visit(first_login, newcomer, hub, hub_admin):
    name = newcomer["userName"]
    env = process_environ(start_server(hub_admin, name))
    try:
        wait_for(lambda: Path(env["BEARER_TOKEN_FILE"]).exists(), timeout=30, what=f"{name}'s token files")
        lab = first_login.get(f"{hub.url}/user/{name}/lab", timeout=60)  # the hub -> server OAuth handshake
        assert lab.status_code == 200, lab.status_code
        found = first_login.get(
            f"{hub.url}/user/{name}/rucio-jupyterlab/did-search",
            params={"namespace": "escape", "did": f"{DEMO_SCOPE}:*", "type": "all"},
            timeout=60,
        )
        assert found.status_code == 200, found.text
        assert "higgs-candidates" in {d["did"].split(":")[1] for d in found.json()}

        cli_env = {k: v for k, v in env.items() if k.startswith(("RUCIO_", "BEARER_TOKEN_FILE", "PATH", "HOME"))}
        rucio = str(VENVS / "singleuser" / "bin" / "rucio")
        whoami = subprocess.run([rucio, "whoami"], env=cli_env, capture_output=True, text=True, timeout=60)
        assert whoami.returncode == 0, whoami.stderr
        assert name in whoami.stdout
        scopes = subprocess.run([rucio, "scope", "list"], env=cli_env, capture_output=True, text=True, timeout=60)
        assert scopes.returncode == 0, scopes.stderr
        assert f"user.{name}" in scopes.stdout
    finally:
        hub_admin.delete(f"{hub_admin.api}/users/{name}/server", timeout=60)
