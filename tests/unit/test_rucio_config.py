"""The hub's Rucio settings -> rucio-jupyterlab instance and rucio.cfg."""

import stat
from pathlib import Path

import pytest

from singleuser.rucio_config import ConfigError, cache_dir, client_config_text, rucio_instance, write_client_config
from singleuser.server_settings import ServerSettings

BASE = {
    "RUCIO_BASE_URL": "https://rucio.example",
    "BEARER_TOKEN_FILE": "/dev/shm/t/rucio_token",
    "RUCIO_ACCOUNT": "alice",
}


def settings(**env):
    return ServerSettings(environ={**BASE, **env})


def test_replica_mode_opens_the_mounted_rses_files_at_the_mount_path():
    instance = rucio_instance(
        settings(
            RUCIO_MOUNTED_RSE="EULAKE-1",
            RUCIO_RSE_MOUNT_PATH="/eos/eulake",
            RUCIO_PATH_BEGINS_AT="2",
            RUCIO_SITE_NAME="CERN",
        )
    )
    assert instance["mode"] == "replica"
    # The extension calls the mounted RSE its destination_rse.
    assert (instance["destination_rse"], instance["rse_mount_path"], instance["path_begins_at"]) == (
        "EULAKE-1",
        "/eos/eulake",
        2,
    )
    assert instance["oidc_auth"] == "file" and instance["oidc_file_name"] == "/dev/shm/t/rucio_token"
    assert instance["site_name"] == "CERN"
    assert instance["rucio_auth_url"] == "https://rucio.example"
    assert instance["wildcard_enabled"] is True


def test_download_mode_without_a_mount():
    assert rucio_instance(settings())["mode"] == "download"


def test_configuration_overrides_the_environment():
    from traitlets.config import Config

    config = Config()
    config.ServerSettings.rucio_base_url = "https://other.example"
    assert rucio_instance(ServerSettings(config=config, environ=BASE))["rucio_base_url"] == "https://other.example"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RUCIO_BASE_URL": "", "BEARER_TOKEN_FILE": ""}, "RUCIO_BASE_URL, BEARER_TOKEN_FILE not set"),
        ({"RUCIO_RSE_MOUNT_PATH": "/eos"}, "RUCIO_MOUNTED_RSE is not"),
        (
            {"RUCIO_RSE_MOUNT_PATH": "/eos", "RUCIO_MOUNTED_RSE": "X", "RUCIO_PATH_BEGINS_AT": "two"},
            "RUCIO_PATH_BEGINS_AT must be an integer",
        ),
    ],
)
def test_missing_or_bad_settings_are_named(env, message):
    with pytest.raises(ConfigError, match=message):
        rucio_instance(settings(**env))


def test_client_config_uses_oidc_and_the_account_without_any_token():
    text = client_config_text(settings())
    assert "auth_type = oidc" in text and "account = alice" in text
    assert "rucio_host = https://rucio.example" in text
    assert "token" not in text.replace("auth_token_file", "")
    # The clients' own token cache sits in the private token directory, not under a /tmp path anyone can create.
    assert "auth_token_file_path = /dev/shm/t/.rucio-cli-cache" in text


def test_rucio_cfg_is_written_whole_into_a_directory_of_the_user_alone(tmp_path):
    path = tmp_path / "dlaas-alice" / "rucio.cfg"
    write_client_config(settings(), path)
    write_client_config(settings(RUCIO_ACCOUNT="alice2"), path)
    assert "account = alice2" in path.read_text()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["rucio.cfg"]


def test_the_cache_dir_is_the_one_the_extension_uses():
    def of(env):
        return cache_dir(ServerSettings(environ=env))

    assert of({"JUPYTERHUB_SERVICE_PREFIX": "/user/a/", "RUCIO_CACHE_DIR": "/tmp/rj-a"}) == Path("/tmp/rj-a")
    assert of({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}) == Path("/tmp/.rucio_jupyterlab")
    assert of({"HOME": "/home/a"}) == Path("/home/a/.rucio_jupyterlab")
