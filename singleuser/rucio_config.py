"""Configure the Rucio JupyterLab extension and rucio-clients from the Rucio settings the hub's spawner gives.

The installed rucio-jupyterlab reads only its traitlets configuration (RucioConfig.instances); this module turns
the hub's settings (singleuser.server_settings) into that configuration (see jupyter_config/jupyter_server_config.py),
writes the matching rucio.cfg for the `rucio` CLI and Python in notebooks, and pre-seeds the extension's credentials
so the sidebar works without pressing Settings -> Validate. Every token comes from the Rucio token file, which the
token agent keeps fresh: no token is ever stored here.

rucio.cfg and the extension's cache live in per-user directories that may sit under /tmp: both are created or
accepted by singleuser.private_dirs (ours alone, 0700), since whoever controls rucio.cfg chooses the server the
user's clients send their token to, and whoever controls the cache chooses what the sidebar shows.
"""

from __future__ import annotations

from pathlib import Path

from traitlets import TraitError

from singleuser import contract
from singleuser.private_dirs import ensure_private_dir
from singleuser.rucio_cfg import client_section
from singleuser.server_settings import ServerSettings
from singleuser.token_files import write_private_file


class ConfigError(ValueError):
    """The hub's Rucio settings are missing or invalid; the message names them."""


def rucio_instance(settings: ServerSettings) -> dict:
    """The rucio-jupyterlab instance the hub's settings describe (replica mode when an RSE is mounted)."""
    missing = [
        var.name
        for var, value in (
            (contract.RUCIO_URL, settings.rucio_base_url),
            (contract.RUCIO_TOKEN_FILE, settings.rucio_token_file),
        )
        if not value
    ]
    if missing:
        raise ConfigError(f"Rucio extension not configured: {', '.join(missing)} not set by the hub's spawner")
    instance = {
        "name": settings.rucio_instance_name,
        "display_name": settings.rucio_display_name,
        "rucio_base_url": settings.rucio_base_url,
        "rucio_auth_url": settings.rucio_auth_url,
        "oidc_auth": "file",
        "oidc_file_name": settings.rucio_token_file,
        # Researchers search with wildcards (scope:name*); the Rucio server still bounds the results.
        "wildcard_enabled": True,
    }
    if settings.rucio_site_name:
        instance["site_name"] = settings.rucio_site_name
    if settings.rucio_ca_cert:
        instance["rucio_ca_cert"] = settings.rucio_ca_cert
    if settings.rse_mount_path:
        if not settings.mounted_rse:
            raise ConfigError(
                f"{contract.RSE_MOUNT_PATH.name} is set but {contract.MOUNTED_RSE.name} is not: replica mode needs both"
            )
        try:
            begins_at = settings.path_begins_at
        except TraitError as e:
            raise ConfigError(str(e)) from None
        instance.update(
            mode="replica",
            destination_rse=settings.mounted_rse,
            rse_mount_path=settings.rse_mount_path,
            path_begins_at=begins_at,
        )
    else:
        instance.update(mode="download")
        instance.setdefault("rucio_ca_cert", "")
    return instance


def client_config_text(settings: ServerSettings) -> str:
    """rucio.cfg for rucio-clients: OIDC with the bearer token file, the user's account, the site for caches."""
    instance = rucio_instance(settings)
    return client_section(
        rucio_host=instance["rucio_base_url"],
        auth_host=instance["rucio_auth_url"],
        auth_type="oidc",
        account=settings.rucio_account,
        request_retries=3,
        # Where the clients would cache a token they obtained themselves: next to the token files, not in their
        # default /tmp/<user>/.rucio_<user>, which anyone could create first and fill with a token of theirs.
        auth_token_file_path=Path(settings.rucio_token_file).parent / ".rucio-cli-cache",
        ca_cert=instance.get("rucio_ca_cert"),
    )


def write_client_config(settings: ServerSettings, path: Path) -> Path:
    """Write rucio.cfg atomically into a private directory (UnsafePathError, one line, if it is not ours)."""
    write_private_file(path, client_config_text(settings), hint=f"set {contract.CLIENT_CONFIG.name} to another path")
    return Path(path)


def cache_dir(settings: ServerSettings) -> Path:
    """The directory rucio-jupyterlab keeps its cache in, chosen as the extension chooses it (rucio_jupyterlab.db)."""
    if settings.spawned:
        return Path(settings.rucio_cache_dir)
    return Path(settings.home) / ".rucio_jupyterlab"


def prepare_cache_dir(settings: ServerSettings) -> Path:
    """Create or accept the extension's cache directory before the extension does (it would take any directory
    found there); raises UnsafePathError with one line if someone else's directory or a symlink is in the way."""
    return ensure_private_dir(cache_dir(settings), hint=f"set {contract.EXTENSION_CACHE.name} to another path")


def preseed_credentials(instance: dict) -> None:
    """Record, in the extension's per-user cache, that this instance authenticates with OIDC from a file.

    The extension answers 401 "Credentials not found" until such a record exists (normally made by the Validate
    button). The record names no secret: the token itself is read from the file on every use.
    """
    from rucio_jupyterlab import db as extension_db

    # One transaction: one commit (one fsync of the cache database) instead of one per table and row; this runs
    # while the server starts, before it answers.
    with extension_db.db.atomic():
        db = extension_db.get_db()
        db.set_active_instance(instance["name"])
        db.set_active_auth_method("oidc")
        db.set_rucio_auth_credentials(
            namespace=instance["name"],
            auth_type="oidc",
            params={"oidc_auth": "file", "oidc_auth_source": instance["oidc_file_name"]},
        )
