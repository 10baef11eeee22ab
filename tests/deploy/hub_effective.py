"""The effective hub settings a JupyterHub configuration file gives, for comparing deployments.

    .venvs/main/bin/python tests/deploy/hub_effective.py CONFIG.py

Loads the file into a real JupyterHub (load_config_file), resolves the authenticator class through its entry point
and builds the authenticator (its own startup checks run) and a spawner of the configured spawner class - KubeSpawner
without a cluster (a kubeconfig naming the discard port on loopback; nothing is contacted). Prints as JSON what each
of them ends up with for the settings hub_plugins.hub_config.configure sets, and a few that differ by design (marked
as such). Needs JUPYTERHUB_CRYPT_KEY, and the IAM client secret where the file does not set it (OAUTH_CLIENT_SECRET).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from pathlib import Path

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "current-context": "offline",
    "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:9"}}],
    "users": [{"name": "offline", "user": {}}],
    "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
}


def _name(obj) -> str:
    return f"{obj.__module__}.{obj.__qualname__}" if callable(obj) else repr(obj)


def effective(config_file: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="dlaas-effective-") as tmp:
        # Read when kubernetes_asyncio is imported (with KubeSpawner, when the configuration names it).
        kubeconfig = Path(tmp) / "kubeconfig"
        kubeconfig.write_text(json.dumps(KUBECONFIG))
        os.environ["KUBECONFIG"] = str(kubeconfig)
        return _effective(config_file)


def _effective(config_file: str) -> dict:
    from jupyterhub.app import JupyterHub

    from hub_plugins import sqlite_tuning

    app = JupyterHub()
    app.load_config_file(config_file)
    authenticator = app.authenticator_class(parent=app)
    from kubespawner import KubeSpawner

    mock = {"_mock": True} if issubclass(app.spawner_class, KubeSpawner) else {}  # no cluster: KubeSpawner's own

    async def build():  # KubeSpawner makes its API client on the running loop
        return app.spawner_class(config=app.config, **mock)

    spawner = asyncio.run(build())
    roles = {r["name"]: r for r in app.load_roles}
    return {
        "authenticator_class": _name(app.authenticator_class),
        "username_pattern": authenticator.username_pattern,
        "allow_hub_admins": authenticator.allow_hub_admins,
        "admins": sorted({*authenticator.admin_users, *authenticator.admin_groups}),
        "enable_auth_state": authenticator.enable_auth_state,
        "token_api": "/api/dlaas/tokens" in [h[0] for h in authenticator.get_handlers(app)],
        "custom_scopes": app.custom_scopes,
        "user_role_scopes": roles.get("user", {}).get("scopes"),
        "operator_role_scopes": roles.get("dlaas-operator", {}).get("scopes"),
        "token_expires_in_max_seconds": app.token_expires_in_max_seconds,
        "server_token_scopes": spawner.server_token_scopes,
        "pre_spawn_hook": _name(spawner.pre_spawn_hook),
        "default_url": spawner.default_url,
        "http_timeout": spawner.http_timeout,
        "ready_poll_interval": getattr(spawner, "ready_poll_interval", None),
        "sqlite_wal": sqlite_tuning.wal_enabled(),
        # Different by design: reported for the reader, not compared.
        "differs": {
            "spawner_class": _name(app.spawner_class),
            "operator_groups": roles.get("dlaas-operator", {}).get("groups"),
            "allowed_groups": sorted(authenticator.allowed_groups),
            "start_timeout": spawner.start_timeout,
        },
    }


def main() -> int:
    print(json.dumps(effective(sys.argv[1]), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
