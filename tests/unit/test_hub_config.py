"""One hub configuration function for every deployment: what it sets, what it leaves to the deployment."""

import subprocess
import sys

import pytest
from traitlets.config import Config

from hub_plugins import spawner_env
from hub_plugins.hub_config import configure
from hub_plugins.hub_roles import OPERATOR_ROLE, SCOPE


def configured(**deployment) -> Config:
    c = Config()
    for section, traits in deployment.items():
        for name, value in traits.items():
            setattr(c[section], name, value)
    configure(c, sqlite_wal=False)
    return c


def test_the_shared_glue_replaces_z2jhs_dummy_authenticator_and_sets_the_user_server_environment():
    c = configured(JupyterHub={"authenticator_class": "dummy"})  # z2jh's default
    assert c.JupyterHub.authenticator_class == "escape-iam"
    assert c.Spawner.pre_spawn_hook is spawner_env.apply
    assert c.Spawner.default_url == "/lab"
    assert SCOPE in c.JupyterHub.custom_scopes and f"{SCOPE}!server" in c.Spawner.server_token_scopes


@pytest.mark.parametrize(
    "name, accepted",
    [("alice", True), ("john.doe", True), ("../bob", False), ("alice\n", False), ("Alice", False), ("a" * 65, False)],
)
def test_user_names_must_be_one_safe_directory_name(name, accepted):
    import re

    pattern = configured().Authenticator.username_pattern
    assert bool(re.match(pattern, name)) is accepted  # JupyterHub matches it with re.match


def test_roles_follow_the_deployments_operator_groups_and_its_token_lifetime_cap_is_kept():
    c = configured(
        EscapeIAMAuthenticator={"operator_groups": {"escape/ops"}}, JupyterHub={"token_expires_in_max_seconds": 3600}
    )
    operator = next(r for r in c.JupyterHub.load_roles if r["name"] == OPERATOR_ROLE)
    assert operator["groups"] == ["escape/ops"]
    assert c.JupyterHub.token_expires_in_max_seconds == 3600


PROBE = """
import sys
from traitlets.config import Config
from hub_plugins import sqlite_tuning
from hub_plugins.hub_config import configure
c = Config()
if sys.argv[1] != "-":
    c.JupyterHub.db_url = sys.argv[1]
configure(c, sqlite_wal=sys.argv[2] == "wal")
print(sqlite_tuning.wal_enabled())
"""


@pytest.mark.parametrize(
    "db_url, mode, wal",
    [
        ("-", "wal", "True"),  # JupyterHub's default database is SQLite
        ("sqlite:////srv/jupyterhub/jupyterhub.sqlite", "wal", "True"),
        ("postgresql://hub@db/jupyterhub", "wal", "False"),
        ("sqlite:////nfs/jupyterhub.sqlite", "nowal", "False"),  # configure(c, sqlite_wal=False): a database on NFS
    ],
)
def test_sqlite_goes_to_wal_mode_unless_the_database_is_elsewhere_or_on_nfs(db_url, mode, wal):
    # In a child process: the listener applies to every engine of the process, as in the hub.
    result = subprocess.run([sys.executable, "-c", PROBE, db_url, mode], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == wal
