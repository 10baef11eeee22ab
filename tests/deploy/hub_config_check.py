"""Load the hub configuration of a z2jh values file into a real JupyterHub, as the z2jh hub pod would.

    .venvs/main/bin/python tests/deploy/hub_config_check.py VALUES.json [--namespace dlaas] [--chart-version X]

Writes a jupyterhub_config.py that applies the values the way z2jh's hub does (tests/deploy/z2jh_hub.py: the
singleuser mapping, hub.services, hub.loadRoles, hub.config, then hub.extraConfig in key order), loads it with
JupyterHub.load_config_file, resolves JupyterHub.authenticator_class through its entry point and instantiates the
authenticator (its own startup checks run: crypt key, auth_state, exchange targets). Every hub.config section must
name a class the hub loads (KubeSpawner included) and every key a configurable trait of it. No server is started and
nothing is contacted. Needs JUPYTERHUB_CRYPT_KEY and OAUTH_CLIENT_SECRET in the environment (z2jh's hub.extraEnv
provides them from the Secret). Prints a JSON report; exit 1 when anything is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

CONFIG_TEMPLATE = """\
import json
from z2jh_hub import apply_values  # next to this script
c = get_config()  # noqa: F821
apply_values(c, json.loads({values!r}), namespace={namespace!r}, chart_version={chart_version!r})
"""


USERNAME_PROBES = ["alice", "john.doe", "j_doe-2", "../bob", "bob/x", "alice\n", "Alice", ".hidden", "a" * 65]


class FakeHub:
    api_url = "http://hub:8081/hub/api"


class FakeUser:
    name = "alice"


class FakeSpawner:
    user = FakeUser()
    hub = FakeHub()


def check(values: dict, namespace: str = "dlaas", chart_version: str = "") -> dict:
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator
    from jupyterhub.spawner import Spawner
    from kubespawner import KubeSpawner
    from traitlets.config import Configurable

    from hub_plugins.spawner_env import DataLakeEnvironment

    report: dict = {"errors": []}
    with tempfile.TemporaryDirectory(prefix="dlaas-hubcfg-") as tmp:
        path = Path(tmp) / "jupyterhub_config.py"
        path.write_text(
            CONFIG_TEMPLATE.format(values=json.dumps(values), namespace=namespace, chart_version=chart_version)
        )
        app = JupyterHub()
        app.load_config_file(str(path))

    auth_cls = app.authenticator_class
    report["authenticator_class"] = f"{auth_cls.__module__}.{auth_cls.__qualname__}"
    known: dict[str, type[Configurable]] = {
        "JupyterHub": JupyterHub,
        "Authenticator": Authenticator,
        "Spawner": Spawner,
        "KubeSpawner": KubeSpawner,
        "DataLakeEnvironment": DataLakeEnvironment,
        auth_cls.__name__: auth_cls,
    }
    from jupyterhub.services.service import Service

    for name, service in (values.get("hub", {}).get("services") or {}).items():
        for key in sorted(set(service) - {"apiToken"}):
            if not Service.class_traits().get(key):  # what JupyterHub's init_services refuses
                report["errors"].append(f"hub.services.{name}.{key}: not a field of a JupyterHub service")
    for section, traits in (values.get("hub", {}).get("config") or {}).items():
        cls = known.get(section)
        if cls is None:
            report["errors"].append(f"hub.config.{section}: no class of that name is loaded by the hub")
            continue
        configurable = set(cls.class_trait_names(config=True))
        for name in traits:
            if name not in configurable:
                report["errors"].append(f"hub.config.{section}.{name}: not a configurable trait of {cls.__name__}")

    try:
        authenticator = auth_cls(parent=app)
    except Exception as e:  # the authenticator's own startup checks
        report["errors"].append(f"the authenticator refuses the configuration: {e}")
        return report
    report["authenticator"] = {
        "issuer": authenticator.issuer,
        "client_id": authenticator.client_id,
        "client_secret_set": bool(authenticator.client_secret),
        "exchange_targets": authenticator.exchange_targets,
        "allowed_groups": sorted(authenticator.allowed_groups),
        "admin_groups": sorted(authenticator.admin_groups),
        "manage_groups": authenticator.manage_groups,
        "enable_auth_state": authenticator.enable_auth_state,
        "refresh_margin": authenticator.refresh_margin,
        "handlers": [h[0] for h in authenticator.get_handlers(app)],
    }
    # Which names the hub would accept as user names (they become directory names: the scratch subPath).
    report["username_accepted"] = {name: bool(authenticator.validate_username(name)) for name in USERNAME_PROBES}
    report["custom_scopes"] = sorted(app.custom_scopes)
    report["load_roles"] = app.load_roles
    report["services"] = app.services
    report["admin_users"] = sorted(app.config.Authenticator.get("admin_users", set()))
    report["kubespawner"] = {k: v for k, v in app.config.KubeSpawner.items() if k != "pre_spawn_hook"}
    report["token_expires_in_max_seconds"] = app.config.JupyterHub.get("token_expires_in_max_seconds")
    spawner_cfg = app.config.Spawner
    report["server_token_scopes"] = list(spawner_cfg.get("server_token_scopes", []))
    hook = app.config.KubeSpawner.get("pre_spawn_hook") or app.config.Spawner.get("pre_spawn_hook")
    report["pre_spawn_hook"] = f"{hook.__module__}.{hook.__name__}" if callable(hook) else repr(hook)
    env = DataLakeEnvironment(config=app.config).environment(FakeSpawner())
    report["user_environment"] = env
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("values", type=Path)
    parser.add_argument("--namespace", default="dlaas")
    parser.add_argument("--chart-version", default="")
    args = parser.parse_args()
    report = check(json.loads(args.values.read_text()), args.namespace, args.chart_version)
    print(json.dumps(report, default=str))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
