"""Render the user pod of every profile with the real KubeSpawner, from a z2jh values file, without a cluster.

    .venvs/main/bin/python tests/deploy/user_pods.py VALUES.json [--namespace dlaas] [--chart-version X]
        [--user NAME ...] [--user-options JSON]

The hub configuration is what z2jh makes of the values (z2jh_hub.apply_values: the singleuser mapping, hub.config,
then the extraConfig snippets - the hub glue shared with the local stack), loaded by a real JupyterHub, whose
init_hub makes the Hub object spawners get. For each user and each profile of singleuser.profileList a KubeSpawner
is built as the hub builds one (its config, user, hub, API token and OAuth client id) and the profile is picked as
the spawn form posts it (KubeSpawner's options_from_form). Then JupyterHub's spawn steps run in JupyterHub's order
(auth_state_hook with a login's auth_state, group overrides, apply_user_options, pre_spawn_hook) and KubeSpawner's
start() steps up to the pod: load_user_options (the profile's kubespawner_override, applied by KubeSpawner's own
code), get_pod_manifest and modify_pod_hook. The pod is serialised by the API client KubeSpawner sends it with.
With --user-options, each user spawns once with those options instead, as a REST API request may set them.

No API server is contacted: KubeSpawner loads a kubeconfig and creates its client when it is built, so KUBECONFIG
names an address on loopback (the discard port); nothing up to get_pod_manifest sends a request.

Besides what KubeSpawner refuses itself, this reports what it would silently ignore: a profile key it does not read
(a misspelled `kubespawner_override` leaves the profile without its overrides), an override key that is no
KubeSpawner trait (KubeSpawner sets it as a plain attribute that nothing reads), and values keys that z2jh turns into
pod settings but z2jh_hub does not replay. Prints JSON {"pods": {user: {slug: pod}}, "api_tokens": {user: token},
"auth_state_tokens": [...], "logs": [[logger, level, message], ...], "errors": [...]}; exit 1 on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import secrets
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

# What KubeSpawner 7 reads in a profile_list entry (its profile_list help and _load_profile).
PROFILE_KEYS = frozenset({"display_name", "slug", "description", "default", "kubespawner_override", "profile_options"})

KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "current-context": "offline",
    "clusters": [{"name": "offline", "cluster": {"server": "https://127.0.0.1:9"}}],
    "users": [{"name": "offline", "user": {}}],
    "contexts": [{"name": "offline", "context": {"cluster": "offline", "user": "offline"}}],
}

CONFIG_TEMPLATE = """\
import json
from z2jh_hub import apply_values  # next to this script
c = get_config()  # noqa: F821
apply_values(c, json.loads({values!r}), namespace={namespace!r}, chart_version={chart_version!r})
"""


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[list[str]] = []

    def emit(self, record):
        self.records.append([record.name, record.levelname, record.getMessage()])


class Group:
    def __init__(self, name):
        self.name = name


class User:
    """What a spawner reads of JupyterHub's User: name, id, URL, groups and the encrypted-at-rest auth_state."""

    def __init__(self, name: str, uid: int, groups: list[str], auth_state: dict):
        self.name = name
        self.id = uid
        self.escaped_name = quote(name, safe="@~")
        self.url = f"/user/{self.escaped_name}/"
        self.groups = [Group(g) for g in groups]
        self._auth_state = auth_state

    async def get_auth_state(self):
        return self._auth_state


def fake_jwt(purpose: str) -> str:
    """A token of an IdP's shape (header.payload.signature), unique per purpose."""

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signature = base64.urlsafe_b64encode(secrets.token_bytes(64)).rstrip(b"=").decode()
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part({'purpose': purpose, 'n': secrets.token_hex(8)})}.{signature}"


def login_auth_state() -> dict:
    """An auth_state with every token a login leaves with the hub: IAM's and the exchanged ones."""
    return {
        "access_token": fake_jwt("iam-access"),
        "refresh_token": fake_jwt("iam-refresh"),
        "id_token": fake_jwt("iam-id"),
        "exchanged": {
            target: {"access_token": fake_jwt(f"{target}-access"), "refresh_token": fake_jwt(f"{target}-refresh")}
            for target in ("rucio", "eos")
        },
    }


def token_values(node: dict) -> list[str]:
    """Every token in an auth_state: the values of keys ending in `token`, at any depth."""
    found = []
    for key, value in node.items():
        if isinstance(value, dict):
            found += token_values(value)
        elif key.endswith("token") and isinstance(value, str):
            found.append(value)
    return found


def profile_problems(profiles, spawner_class) -> list[str]:
    traits = set(spawner_class.class_trait_names())
    found = []
    for i, profile in enumerate(profiles if isinstance(profiles, list) else []):
        where = f"singleuser.profileList[{i}] ({profile.get('slug', profile.get('display_name'))})"
        found += [
            f"{where}.{k}: not a key of a KubeSpawner profile (KubeSpawner would ignore it)"
            for k in sorted(set(profile) - PROFILE_KEYS)
        ]
        found += [
            f"{where}.kubespawner_override.{k}: not a KubeSpawner trait (KubeSpawner would set it as a plain "
            "attribute and nothing would read it)"
            for k in sorted(set(profile.get("kubespawner_override") or {}) - traits)
        ]
    return found


async def spawn(app, spawner_class, user: User, api_token: str, form: dict | None, user_options: dict | None):
    """One spawn up to the pod, in the order JupyterHub's User.spawn and KubeSpawner's start run these steps."""
    from jupyterhub.objects import Server
    from jupyterhub.utils import maybe_future

    spawner = spawner_class(
        config=app.config,
        user=user,
        hub=app.hub,
        api_token=api_token,
        oauth_client_id=f"jupyterhub-user-{quote(user.name)}",
        cookie_options={},
    )
    spawner.server = Server(base_url=user.url)
    spawner.user_options = (
        user_options if user_options is not None else await maybe_future(spawner.run_options_from_form(form))
    )
    await spawner.run_auth_state_hook(await user.get_auth_state())
    await spawner.apply_group_overrides()
    await spawner._run_apply_user_options(spawner.user_options)  # JupyterHub's step (User.spawn calls it so)
    await maybe_future(spawner.run_pre_spawn_hook())
    await spawner.load_user_options()  # the first thing KubeSpawner's start() does
    pod = await spawner.get_pod_manifest()
    if spawner.modify_pod_hook:
        pod = await maybe_future(spawner.modify_pod_hook(spawner, pod))
    return spawner.api.api_client.sanitize_for_serialization(pod)


async def render(values: dict, namespace: str, chart_version: str, users: list[str], user_options: dict | None) -> dict:
    from jupyterhub.app import JupyterHub
    from z2jh_hub import unmodelled_keys

    report: dict = {"pods": {}, "api_tokens": {}, "auth_state_tokens": [], "errors": []}
    report["errors"] += [
        f"{key}: z2jh makes user pod settings of it, tests/deploy/z2jh_hub.py does not replay it (add it there)"
        for key in unmodelled_keys(values)
    ]
    with tempfile.TemporaryDirectory(prefix="dlaas-userpods-") as tmp:
        path = Path(tmp) / "jupyterhub_config.py"
        path.write_text(
            CONFIG_TEMPLATE.format(values=json.dumps(values), namespace=namespace, chart_version=chart_version)
        )
        app = JupyterHub()
        app.load_config_file(str(path))
    app.init_hub()
    spawner_class = app.spawner_class
    profiles = (values.get("singleuser") or {}).get("profileList") or []
    report["errors"] += profile_problems(profiles, spawner_class)
    if report["errors"]:
        return report
    forms = (
        {"api": None}
        if user_options is not None
        else {p["slug"]: {"profile": [p["slug"]]} for p in profiles} or {"default": {}}
    )
    for uid, name in enumerate(users, start=1):
        auth_state = login_auth_state()
        report["auth_state_tokens"] += token_values(auth_state)
        api_token = report["api_tokens"][name] = secrets.token_hex(16)  # the shape of JupyterHub's new_token()
        user = User(name, uid, ["escape"], auth_state)
        for slug, form in forms.items():
            try:
                pod = await spawn(app, spawner_class, user, api_token, form, user_options)
            except Exception as e:  # what the hub would turn into a failed spawn
                report["errors"].append(f"{name}/{slug}: {type(e).__name__}: {e}")
                continue
            report["pods"].setdefault(name, {})[slug] = pod
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("values", type=Path)
    parser.add_argument("--namespace", default="dlaas")
    parser.add_argument("--chart-version", default="")
    parser.add_argument("--user", action="append", dest="users", help="hub user names (default: alice)")
    parser.add_argument("--user-options", type=json.loads, default=None, help="user_options of a REST API spawn")
    args = parser.parse_args()
    records = Records()
    logging.getLogger().addHandler(records)
    logging.getLogger().setLevel(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="dlaas-kubeconfig-") as tmp:
        kubeconfig = Path(tmp) / "config"
        kubeconfig.write_text(json.dumps(KUBECONFIG))
        os.environ["KUBECONFIG"] = str(kubeconfig)
        report = asyncio.run(
            render(
                json.loads(args.values.read_text()),
                args.namespace,
                args.chart_version,
                args.users or ["alice"],
                args.user_options,
            )
        )
    report["logs"] = records.records
    print(json.dumps(report))
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
