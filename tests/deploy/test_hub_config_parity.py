"""The local stack's hub and the production hub run the same glue: both configurations, each loaded by a real
JupyterHub with its authenticator and its spawner (ProfilesLocalProcessSpawner, KubeSpawner), end up with the same
authenticator, user name rule, roles, scopes, server token scopes, user server environment hook, landing page,
server answer timeout, token lifetime cap and SQLite tuning (tests/deploy/hub_effective.py)."""

from __future__ import annotations

import json

import pytest

from devstack.hub import LocalHub, register_hub_client
from devstack.iam import DevIAM
from devstack.ports import free_port
from devstack.settings import REPO, Settings
from tests.deploy.conftest import ENVS, FLUX, HERE, deep_merge, docs, release_values
from tests.deploy.warm_python import run_script

#: What hub_plugins.hub_config.configure makes equal everywhere (hub_effective.py reports them).
SHARED = (
    "authenticator_class",
    "username_pattern",
    "allow_hub_admins",
    "admins",
    "enable_auth_state",
    "token_api",
    "custom_scopes",
    "user_role_scopes",
    "operator_role_scopes",
    "token_expires_in_max_seconds",
    "server_token_scopes",
    "pre_spawn_hook",
    "default_url",
    "http_timeout",
    "sqlite_wal",
)

Z2JH_CONFIG = """\
import json, sys
sys.path.insert(0, {here!r})
from z2jh_hub import apply_values
c = get_config()  # noqa: F821
apply_values(c, json.loads({values!r}), namespace="dlaas")
"""


def effective(config_file, **env) -> dict:
    secrets = {"JUPYTERHUB_CRYPT_KEY": "ab" * 32, "OAUTH_CLIENT_SECRET": "not-a-real-secret"}
    r = run_script(HERE / "hub_effective.py", [config_file], env={"PATH": "/usr/bin:/bin", **secrets, **env}, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def z2jh_effective(values: dict, tmp_path) -> dict:
    path = tmp_path / "z2jh_config.py"
    path.write_text(Z2JH_CONFIG.format(here=str(HERE), values=json.dumps(values)))
    return effective(path)


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> dict:
    """What the local stack's hub runs with: LocalHub's configuration file, loaded by devstack/jupyterhub_config.py."""
    state = tmp_path_factory.mktemp("local-hub")
    settings = Settings(state_dir=state, iam_port=0, hub_port=free_port())
    iam = DevIAM(settings)  # not started: only its client registration is read
    register_hub_client(iam, settings.hub_url)
    hub = LocalHub(settings, iam=iam, rucio_url="http://127.0.0.1:9", registrar=True)
    settings_file = state / "hub-settings.json"
    settings_file.write_text(json.dumps({"config": hub.config()}))
    return effective(REPO / "devstack" / "jupyterhub_config.py", DLAAS_HUB_SETTINGS=str(settings_file))


@pytest.fixture(scope="module", params=ENVS)
def production_values(request, deploy) -> dict:
    r = deploy.kustomize(FLUX / "apps" / request.param)
    assert r.returncode == 0, r.stderr
    return release_values(docs(r.stdout), "jupyterhub")


def differences(a: dict, b: dict) -> dict:
    return {key: (a.get(key), b.get(key)) for key in SHARED if a.get(key) != b.get(key)}


def test_the_local_hub_and_the_production_values_share_the_hub_glue(local, production_values, tmp_path):
    production = z2jh_effective(production_values, tmp_path)
    assert differences(local, production) == {}
    # What the glue sets, so that "equal" is not "equally missing".
    assert local["authenticator_class"] == "hub_plugins.authenticator.EscapeIAMAuthenticator"
    assert local["pre_spawn_hook"] == "hub_plugins.spawner_env.apply"
    assert "custom:dlaas-tokens!server" in local["server_token_scopes"] and local["token_api"]
    assert local["operator_role_scopes"] and local["sqlite_wal"] and local["admins"] == []
    # ...while what differs by design does differ.
    assert local["differs"]["spawner_class"] == "devstack.local_spawner.ProfilesLocalProcessSpawner"
    assert production["differs"]["spawner_class"] == "hub_plugins.kube_spawner.DataLakeKubeSpawner"
    assert local["ready_poll_interval"] > 0  # both spawners return once the server listens (hub_plugins.server_ready)


@pytest.mark.parametrize(
    "patch, key",
    [
        # A subclass's section wins over configure's Spawner-level setting: the pods would land elsewhere.
        ({"hub": {"config": {"KubeSpawner": {"default_url": "/tree"}}}}, "default_url"),
        # A deployment narrowing user names differently from the local stack.
        ({"hub": {"config": {"EscapeIAMAuthenticator": {"username_pattern": "[a-z]+"}}}}, "username_pattern"),
        # Glue written by hand after configure(c) in the values.
        (
            {"hub": {"extraConfig": {"zz-extra.py": "c.Spawner.server_token_scopes = ['access:servers!server']"}}},
            "server_token_scopes",
        ),
    ],
)
def test_a_deployment_that_drifts_from_the_shared_glue_is_caught(local, production_values, tmp_path, patch, key):
    drifted = z2jh_effective(deep_merge(production_values, patch), tmp_path)
    assert key in differences(local, drifted)
