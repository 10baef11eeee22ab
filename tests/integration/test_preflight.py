"""dlaas-preflight against real services: the local stack's own hub configuration passes; an IAM where the hub's
client lacks the token-exchange grant is named as exactly that problem."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.hub import HUB_CLIENT_ID
from devstack.iam_login import code_flow_tokens
from devstack.settings import REPO, Settings
from devstack.stack import Stack


def preflight(config: Path, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hub_plugins.preflight", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


@pytest.fixture
def alice_iam_token(iam, tmp_path):
    """An IAM access token of alice (a test user), as an operator would get one for the preflight."""
    login = code_flow_tokens(iam, iam.client("dlaas-test"), "alice", "alice-pass")
    path = tmp_path / "subject-token"
    path.write_text(login["access_token"])
    path.chmod(0o600)
    return path


def test_the_local_stacks_hub_configuration_passes_every_check(hub, rucio, alice_iam_token):
    result = preflight(
        REPO / "devstack" / "jupyterhub_config.py",
        "--subject-token-file",
        str(alice_iam_token),
        env={"DLAAS_HUB_SETTINGS": str(hub.dir / "hub-settings.json")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for check in (
        "IAM discovery",
        "IAM signing keys",
        "token exchange grant (rucio)",
        "token exchange grant (eos)",
        "token exchange (rucio)",
        "Rucio accepts exchanged tokens",
        "Rucio scratch policy",
    ):
        assert any(line.startswith(f"OK   {check}:") for line in lines), (check, result.stdout)
    assert "the test user is Rucio account 'alice'" in result.stdout
    assert alice_iam_token.read_text() not in result.stdout + result.stderr


@pytest.fixture
def iam_without_exchange_grant(tmp_path):
    """A second dev IAM where the hub's client is registered without the token-exchange grant."""
    with Stack(Settings.free_ports(tmp_path / "state")) as stack:
        # Registered again, over the stack's own registration of the hub's client: without the grant.
        client = stack.iam.add_client(HUB_CLIENT_ID, ["http://127.0.0.1:9/hub/oauth_callback"], token_exchange=False)
        yield stack.start("iam").iam, client


def test_a_client_without_the_exchange_grant_is_named_as_the_problem(iam_without_exchange_grant, rucio, tmp_path):
    iam, client = iam_without_exchange_grant
    config = tmp_path / "jupyterhub_config.py"
    config.write_text(
        "c = get_config()  # noqa: F821\n"
        f"c.EscapeIAMAuthenticator.issuer = {iam.issuer!r}\n"
        f"c.EscapeIAMAuthenticator.client_id = {client['client_id']!r}\n"
        f"c.EscapeIAMAuthenticator.client_secret = {client['client_secret']!r}\n"
        "c.EscapeIAMAuthenticator.exchange_targets = {'rucio': {'audience': 'rucio', 'scope': 'openid profile'}}\n"
        f"c.DataLakeEnvironment.rucio_base_url = {rucio.url!r}\n"
    )
    result = preflight(config)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1, result.stdout
    assert failed[0].startswith("FAIL token exchange grant (rucio):")
    assert "ask an IAM administrator to enable the token-exchange grant" in failed[0]
    assert client["client_secret"] not in result.stdout
