"""RUCIO_* environment -> rucio-jupyterlab instance and rucio.cfg."""

import pytest

from singleuser.rucio_config import ConfigError, client_config_text, instance_from_env

BASE = {"RUCIO_BASE_URL": "https://rucio.example", "BEARER_TOKEN_FILE": "/dev/shm/t/rucio_token",
        "RUCIO_ACCOUNT": "alice"}


def test_replica_mode_from_the_mount_settings():
    instance = instance_from_env({**BASE, "RUCIO_DESTINATION_RSE": "EULAKE-1", "RUCIO_RSE_MOUNT_PATH": "/eos/eulake",
                                  "RUCIO_PATH_BEGINS_AT": "2", "RUCIO_SITE_NAME": "CERN"})
    assert instance["mode"] == "replica"
    assert (instance["destination_rse"], instance["rse_mount_path"], instance["path_begins_at"]) == (
        "EULAKE-1", "/eos/eulake", 2)
    assert instance["oidc_auth"] == "file" and instance["oidc_file_name"] == "/dev/shm/t/rucio_token"
    assert instance["site_name"] == "CERN"
    assert instance["rucio_auth_url"] == "https://rucio.example"
    assert instance["wildcard_enabled"] is True


def test_download_mode_without_a_mount():
    assert instance_from_env(BASE)["mode"] == "download"


@pytest.mark.parametrize(
    "env, message",
    [
        ({}, "RUCIO_BASE_URL, BEARER_TOKEN_FILE not set"),
        ({**BASE, "RUCIO_RSE_MOUNT_PATH": "/eos"}, "RUCIO_DESTINATION_RSE is not"),
        ({**BASE, "RUCIO_RSE_MOUNT_PATH": "/eos", "RUCIO_DESTINATION_RSE": "X", "RUCIO_PATH_BEGINS_AT": "two"},
         "RUCIO_PATH_BEGINS_AT must be an integer"),
    ],
)
def test_missing_or_bad_settings_are_named(env, message):
    with pytest.raises(ConfigError, match=message):
        instance_from_env(env)


def test_client_config_uses_oidc_and_the_account_without_any_token():
    text = client_config_text(BASE)
    assert "auth_type = oidc" in text and "account = alice" in text
    assert "rucio_host = https://rucio.example" in text
    assert "token" not in text.replace("auth_token_file", "")
