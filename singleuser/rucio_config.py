"""Configure the Rucio JupyterLab extension and rucio-clients from the RUCIO_* variables the hub's spawner sets.

The installed rucio-jupyterlab reads only its traitlets configuration (RucioConfig.instances); this module turns
the environment into that configuration (see jupyter_config/jupyter_server_config.py), writes the matching
rucio.cfg for the `rucio` CLI and Python in notebooks, and pre-seeds the extension's credentials so the sidebar
works without pressing Settings -> Validate. Every token comes from the token file (BEARER_TOKEN_FILE), which the
token agent keeps fresh: no token is ever stored here.

rucio.cfg and the extension's cache live in per-user directories that may sit under /tmp: both are created or
accepted by singleuser.private_dirs (ours alone, 0700), since whoever controls rucio.cfg chooses the server the
user's clients send their token to, and whoever controls the cache chooses what the sidebar shows.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from singleuser.private_dirs import ensure_private_dir
from singleuser.token_files import write_private_file


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
        # Where the clients would cache a token they obtained themselves: next to the token files, not in their
        # default /tmp/<user>/.rucio_<user>, which anyone could create first and fill with a token of theirs.
        f"auth_token_file_path = {Path(env['BEARER_TOKEN_FILE']).parent / '.rucio-cli-cache'}",
    ]
    if instance.get("rucio_ca_cert"):
        lines.append(f"ca_cert = {instance['rucio_ca_cert']}")
    return "\n".join(lines) + "\n"


def write_client_config(env: Mapping[str, str], path: Path) -> Path:
    """Write rucio.cfg atomically into a private directory (UnsafePathError, one line, if it is not ours)."""
    write_private_file(path, client_config_text(env), hint="set RUCIO_CONFIG to another path")
    return Path(path)


def cache_dir(env: Mapping[str, str]) -> Path:
    """The directory rucio-jupyterlab keeps its cache in, chosen as the extension chooses it (rucio_jupyterlab.db)."""
    if env.get("JUPYTERHUB_SERVICE_PREFIX") or env.get("KUBERNETES_SERVICE_HOST"):
        return Path(env.get("RUCIO_CACHE_DIR") or "/tmp/.rucio_jupyterlab")
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".rucio_jupyterlab"


def prepare_cache_dir(env: Mapping[str, str]) -> Path:
    """Create or accept the extension's cache directory before the extension does (it would take any directory
    found there); raises UnsafePathError with one line if someone else's directory or a symlink is in the way."""
    return ensure_private_dir(cache_dir(env), hint="set RUCIO_CACHE_DIR to another path")


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
