"""The environment a user's server gets: where to fetch and write its tokens, how to reach Rucio - never a token."""

from types import SimpleNamespace

import pytest
from traitlets import TraitError
from traitlets.config import Config, Configurable

from hub_plugins.hub_roles import SERVER_TOKEN_SCOPES
from hub_plugins.spawner_env import DataLakeEnvironment, apply
from singleuser import contract
from singleuser.server_settings import ServerSettings


class FakeSpawner(Configurable):
    """What the hook reads of a Spawner: its user, the hub's API URL, its environment and configuration."""

    def __init__(self, name, **kw):
        super().__init__(**kw)
        self.user = SimpleNamespace(name=name)
        self.hub = SimpleNamespace(api_url="http://hub:8081/hub/api/")
        self.environment = {"JUPYTERHUB_API_TOKEN": "set-by-jupyterhub"}


def spawner(name="alice", config=None):
    return FakeSpawner(name, config=config or Config())


def test_token_locations_are_per_user_and_memory_backed_by_default():
    env = DataLakeEnvironment().environment(spawner("alice"))
    assert env["DLAAS_TOKEN_API_URL"] == "http://hub:8081/hub/api/dlaas/tokens"
    assert env["DLAAS_TOKEN_DIR"] == "/dev/shm/dlaas-alice"
    assert env["BEARER_TOKEN_FILE"] == "/dev/shm/dlaas-alice/rucio_token"
    assert env["OAUTH2_TOKEN"] == "FILE:/dev/shm/dlaas-alice/eos_token"  # EOS reads the token from that file
    assert env["RUCIO_ACCOUNT"] == "alice" and env["RUCIO_AUTH_TYPE"] == "oidc"
    assert "BEARER_TOKEN" not in env and not any("SECRET" in k for k in env)


def test_rucio_settings_come_from_configuration_and_unset_ones_are_left_out():
    config = Config()
    config.DataLakeEnvironment.rucio_base_url = "https://rucio.example"
    config.DataLakeEnvironment.rucio_rse_mount_path = "/eos/escape"
    config.DataLakeEnvironment.rucio_path_begins_at = 3
    env = DataLakeEnvironment(config=config).environment(spawner("bob"))
    assert env["RUCIO_BASE_URL"] == env["RUCIO_AUTH_URL"] == "https://rucio.example"
    assert env["RUCIO_RSE_MOUNT_PATH"] == "/eos/escape" and env["RUCIO_PATH_BEGINS_AT"] == "3"
    assert "RUCIO_SITE_NAME" not in env and "SITE_NAME" not in env and "RUCIO_CA_CERT" not in env
    assert env["RUCIO_CONFIG"] == "/tmp/dlaas-bob/rucio.cfg"


def test_the_pre_spawn_hook_adds_to_the_spawners_environment_and_the_server_token_may_read_tokens():
    config = Config()
    config.DataLakeEnvironment.token_dir = "/run/dlaas/{username}"
    s = spawner("carol", config)
    apply(s)
    assert s.environment["JUPYTERHUB_API_TOKEN"] == "set-by-jupyterhub"
    assert s.environment["BEARER_TOKEN_FILE"] == "/run/dlaas/carol/rucio_token"  # the spawner's config applies
    assert "custom:dlaas-tokens!server" in SERVER_TOKEN_SCOPES  # this server's tokens only


def test_the_site_name_reaches_the_extension_and_rucio_clients_so_reads_go_through_the_sites_cache():
    config = Config()
    config.DataLakeEnvironment.rucio_site_name = "CERN"
    env = DataLakeEnvironment(config=config).environment(spawner("alice"))
    assert env["RUCIO_SITE_NAME"] == "CERN"  # the Rucio extension's instance config
    assert env["SITE_NAME"] == "CERN"  # rucio-clients' client_location: Rucio answers root://<xcache>//... PFNs


def test_the_mounted_rse_reaches_the_extensions_replica_mode_not_the_upload_target():
    config = Config()
    config.DataLakeEnvironment.mounted_rse = "EULAKE-1"
    config.DataLakeEnvironment.rucio_rse_mount_path = "/eos/eulake"
    env = DataLakeEnvironment(config=config).environment(spawner("alice"))
    assert env["RUCIO_MOUNTED_RSE"] == "EULAKE-1"
    assert not [name for name in env if "DESTINATION" in name]  # uploads go where datalakectl's --rse says


def test_what_the_hub_writes_the_server_reads_back_with_the_same_names():
    config = Config()
    config.DataLakeEnvironment.rucio_base_url = "https://rucio.example"
    config.DataLakeEnvironment.mounted_rse = "EULAKE-1"
    config.DataLakeEnvironment.rucio_rse_mount_path = "/eos/eulake"
    config.DataLakeEnvironment.rucio_path_begins_at = 2
    config.DataLakeEnvironment.scratch_mount = "/scratch/{username}"
    config.DataLakeEnvironment.registrar_url = "http://hub/services/dlaas-registrar/"
    env = DataLakeEnvironment(config=config).environment(spawner("alice"))
    assert set(env) <= {var.name for var in contract.FROM_HUB}
    server = ServerSettings(environ=env)
    assert (server.token_api_url, server.token_dir) == ("http://hub:8081/hub/api/dlaas/tokens", "/dev/shm/dlaas-alice")
    assert (server.rucio_token_file, server.eos_token_file) == (
        "/dev/shm/dlaas-alice/rucio_token",
        "/dev/shm/dlaas-alice/eos_token",
    )
    assert (server.rucio_base_url, server.rucio_auth_url, server.rucio_account) == (
        "https://rucio.example",
        "https://rucio.example",
        "alice",
    )
    assert (server.mounted_rse, server.rse_mount_path, server.path_begins_at) == ("EULAKE-1", "/eos/eulake", 2)
    assert (server.scratch_mount, server.scratch_rse) == ("/scratch/alice", "DLAAS-SCRATCH")
    assert server.registrar_url == "http://hub/services/dlaas-registrar/"


def test_unset_settings_mean_the_same_default_on_both_sides():
    hub = DataLakeEnvironment()
    server = ServerSettings(environ={})
    assert hub.scratch_rse == server.scratch_rse == "DLAAS-SCRATCH"
    assert hub.scratch_mount == server.scratch_mount == "/scratch"
    assert hub.rucio_instance_name == server.rucio_instance_name
    assert hub.rucio_display_name == server.rucio_display_name
    assert hub.rucio_path_begins_at == server.path_begins_at == 0


def test_the_rucio_timeout_reaches_the_server_and_must_be_positive():
    config = Config()
    config.DataLakeEnvironment.rucio_timeout = 7.5
    env = DataLakeEnvironment(config=config).environment(spawner("alice"))
    assert env[contract.RUCIO_TIMEOUT.name] == "7.5"
    assert DataLakeEnvironment().environment(spawner("bob"))[contract.RUCIO_TIMEOUT.name] == "60"
    with pytest.raises(TraitError, match="rucio_timeout must be a number of seconds above 0"):
        DataLakeEnvironment(rucio_timeout=0)
