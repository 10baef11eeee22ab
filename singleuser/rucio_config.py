"""Configure the Rucio JupyterLab extension and rucio-clients from the RUCIO_* variables the hub's spawner sets.

The installed rucio-jupyterlab reads only its traitlets configuration (RucioConfig.instances); this module turns
the environment into that configuration (see jupyter_config/jupyter_server_config.py), writes the matching
rucio.cfg for the `rucio` CLI and Python in notebooks, and pre-seeds the extension's credentials so the sidebar
works without pressing Settings -> Validate. Every token comes from the token file (BEARER_TOKEN_FILE), which the
token agent keeps fresh: no token is ever stored here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


class ConfigError(ValueError):
    """RUCIO_* settings are missing or invalid; the message names them."""


def instance_from_env(env: Mapping[str, str]) -> dict:
    """The rucio-jupyterlab instance described by RUCIO_* (replica mode when an RSE mount is given)."""
    missing = [k for k in ("RUCIO_BASE_URL", "BEARER_TOKEN_FILE") if not env.get(k)]
    if missing:
        raise ConfigError(f"Rucio extension not configured: {', '.join(missing)} not set by the hub's spawner")
    instance = {
        "name": env.get("RUCIO_INSTANCE_NAME", "escape"),
        "display_name": env.get("RUCIO_DISPLAY_NAME", "ESCAPE Data Lake"),
        "rucio_base_url": env["RUCIO_BASE_URL"],
        "rucio_auth_url": env.get("RUCIO_AUTH_URL") or env["RUCIO_BASE_URL"],
        "oidc_auth": "file",
        "oidc_file_name": env["BEARER_TOKEN_FILE"],
        # Researchers search with wildcards (scope:name*); the Rucio server still bounds the results.
        "wildcard_enabled": env.get("RUCIO_WILDCARD_ENABLED", "true").lower() in ("1", "true", "yes"),
    }
    if env.get("RUCIO_SITE_NAME"):
        instance["site_name"] = env["RUCIO_SITE_NAME"]
    if env.get("RUCIO_CA_CERT"):
        instance["rucio_ca_cert"] = env["RUCIO_CA_CERT"]
    if env.get("RUCIO_RSE_MOUNT_PATH"):
        if not env.get("RUCIO_DESTINATION_RSE"):
            raise ConfigError("RUCIO_RSE_MOUNT_PATH is set but RUCIO_DESTINATION_RSE is not: replica mode needs both")
        try:
            begins_at = int(env.get("RUCIO_PATH_BEGINS_AT", "0"))
        except ValueError:
            raise ConfigError("RUCIO_PATH_BEGINS_AT must be an integer (path components to drop)") from None
        instance.update(mode="replica", destination_rse=env["RUCIO_DESTINATION_RSE"],
                        rse_mount_path=env["RUCIO_RSE_MOUNT_PATH"], path_begins_at=begins_at)
    else:
        instance.update(mode="download")
        instance.setdefault("rucio_ca_cert", "")
    return instance


def client_config_text(env: Mapping[str, str]) -> str:
    """rucio.cfg for rucio-clients: OIDC with the bearer token file, the user's account, the site for caches."""
    instance = instance_from_env(env)
    lines = [
        "[client]",
        f"rucio_host = {instance['rucio_base_url']}",
        f"auth_host = {instance['rucio_auth_url']}",
        "auth_type = oidc",
        f"account = {env.get('RUCIO_ACCOUNT', '')}",
        "request_retries = 3",
    ]
    if instance.get("rucio_ca_cert"):
        lines.append(f"ca_cert = {instance['rucio_ca_cert']}")
    return "\n".join(lines) + "\n"


def write_client_config(env: Mapping[str, str], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(client_config_text(env))
    os.replace(tmp, path)
    return path


def preseed_credentials(instance: dict) -> None:
    """Record, in the extension's per-user cache, that this instance authenticates with OIDC from a file.

    The extension answers 401 "Credentials not found" until such a record exists (normally made by the Validate
    button). The record names no secret: the token itself is read from the file on every use.
    """
    from rucio_jupyterlab.db import get_db

    db = get_db()
    db.set_active_instance(instance["name"])
    db.set_active_auth_method("oidc")
    db.set_rucio_auth_credentials(namespace=instance["name"], auth_type="oidc",
                                  params={"oidc_auth": "file", "oidc_auth_source": instance["oidc_file_name"]})
