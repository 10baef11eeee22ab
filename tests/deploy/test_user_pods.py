"""User pods as production makes them: the real KubeSpawner 7.1 (tests/deploy/user_pods.py) renders the pod of every
profile from each cluster's z2jh values and the hub glue the values' extraConfig loads, for alice and for john.doe (a
name KubeSpawner escapes in its {username}). Every pod is valid against the Kubernetes schema (strict), passes Pod
Security "restricted", runs its profile's image of the cluster's release, keeps the tokens in a memory-backed volume
around the token directory, mounts EOS with HostToContainer and only the user's own scratch directory, gets the Rucio
environment, and carries no token but the one KubeSpawner always passes: the server's own hub API token
(JUPYTERHUB_API_TOKEN, and its old name JPY_API_TOKEN). That is how JupyterHub lets a server talk to the hub; the
token is limited to Spawner.server_token_scopes and revoked when the server stops, and it is never an IAM, Rucio or
EOS token. A misspelled profile or values key fails.

JupyterHub 6 logs "Received unhandled user_options for <user>: profile" on every profiled spawn: since 5.3 JupyterHub
hands user_options to Spawner.apply_user_options and warns when none is configured, while KubeSpawner 7.1 has no
such hook and applies `profile` itself at the start of start() (load_user_options). The profile is applied all the
same (each profile's image below), user_options cannot choose anything the profile list does not offer, and an
unknown profile is refused - the last tests here.
"""

from __future__ import annotations

import copy
import json
import re

import pytest

from tests.deploy.conftest import ENVS, chart_version, deep_merge, release_values, user_pods_report
from tests.deploy.pod_security import restricted_violations

USERS = ("alice", "john.doe")
IMAGES = {"base": "dlaas-singleuser", "root": "dlaas-singleuser-root", "alma": "dlaas-singleuser-alma"}
# Shapes of secrets: JupyterHub's tokens (uuid4 hex), JWTs (IAM, Rucio and EOS tokens), long base64url strings.
HUB_TOKEN = re.compile(r"[0-9a-f]{32}")
TOKEN_SHAPES = [HUB_TOKEN, re.compile(r"eyJ[\w-]*\.[\w-]+\.[\w-]*"), re.compile(r"[A-Za-z0-9_\-+/=]{40,}")]
HUB_TOKEN_VARIABLES = {"JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"}


def notebook(pod: dict) -> dict:
    (container,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return container


def environment(pod: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in notebook(pod).get("env", [])}


def mounts_of_claim(pod: dict, claim: str) -> list[dict]:
    names = {v["name"] for v in pod["spec"]["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim}
    assert names, f"no volume of the claim {claim}"
    return [
        m
        for c in pod["spec"]["containers"] + pod["spec"].get("initContainers", [])
        for m in c.get("volumeMounts", [])
        if m["name"] in names
    ]


def every_pod(report: dict):
    for user, pods in report["pods"].items():
        for slug, pod in pods.items():
            yield user, slug, pod


@pytest.fixture(params=ENVS)
def cluster(request, user_pods):
    return request.param, *user_pods[request.param]


def test_every_profile_renders_a_valid_pod_for_every_user(deploy, cluster):
    env, values, _, report = cluster
    slugs = [p["slug"] for p in values["singleuser"]["profileList"]]
    assert {user: list(pods) for user, pods in report["pods"].items()} == {user: slugs for user in USERS}
    pods = [pod for _, _, pod in every_pod(report)]
    code, result = deploy.validate("-", stdin="\n---\n".join(json.dumps(p) for p in pods))
    assert code == 0, result["errors"]
    assert result["checked"] == len(pods) == len(USERS) * len(slugs)


def test_each_profile_runs_its_own_image_of_the_clusters_release(cluster):
    env, values, _, report = cluster
    registry = values["singleuser"]["image"]["name"].rpartition("/")[0]
    tag = values["singleuser"]["image"]["tag"]
    for user, slug, pod in every_pod(report):
        image = notebook(pod)["image"]
        assert image == f"{registry}/{IMAGES[slug]}:{tag}", (env, user, slug)
        assert environment(pod)["JUPYTER_IMAGE"] == image
    # What JupyterHub calls unhandled is the profile only, which KubeSpawner applied above.
    unhandled = [m for _, _, m in report["logs"] if m.startswith("Received unhandled user_options")]
    assert all(m.endswith(": profile") for m in unhandled), unhandled


def test_tokens_live_in_a_memory_backed_volume_around_the_token_directory(cluster):
    _, _, _, report = cluster
    for user, slug, pod in every_pod(report):
        env = environment(pod)
        token_dir = env["DLAAS_TOKEN_DIR"]
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        mounts = notebook(pod)["volumeMounts"]
        # Inside the mount, not its mount point: the server creates the directory itself, 0700 and its own.
        assert token_dir not in {m["mountPath"] for m in mounts}, f"{token_dir} is a mount point"
        around = [m for m in mounts if token_dir.startswith(m["mountPath"].rstrip("/") + "/")]
        assert len(around) == 1, f"{token_dir} lies in {len(around)} mounts"
        around = around[0]
        assert volumes[around["name"]]["emptyDir"]["medium"] == "Memory", (user, slug)
        assert "subPath" not in around
        assert env["BEARER_TOKEN_FILE"].startswith(token_dir + "/")
        assert env["OAUTH2_TOKEN"].startswith(f"FILE:{token_dir}/")


def test_eos_is_mounted_with_host_to_container_propagation(cluster):
    _, _, dlaas, report = cluster
    for user, slug, pod in every_pod(report):
        (eos,) = mounts_of_claim(pod, dlaas["eos"]["dataClaim"])
        assert eos.get("mountPropagation") == "HostToContainer", (user, slug)
        assert "subPath" not in eos  # a subPath mount would not see the remounts propagate
        assert environment(pod)["RUCIO_RSE_MOUNT_PATH"].startswith(eos["mountPath"].rstrip("/") + "/")


def test_each_user_mounts_only_their_own_scratch_directory(cluster):
    _, _, dlaas, report = cluster
    seen = {}
    for user, slug, pod in every_pod(report):
        mounts = mounts_of_claim(pod, dlaas["scratch"]["claimName"])
        # The user's own directory - named as the hub (and the registrar) name the user, not KubeSpawner's slug.
        assert [m["subPath"] for m in mounts] == [user], (user, slug)
        seen[user] = mounts[0]["mountPath"]
    assert set(seen) == set(USERS) and len(set(seen.values())) == 1


def test_the_server_gets_the_rucio_environment(cluster):
    _, _, _, report = cluster
    for user, slug, pod in every_pod(report):
        env = environment(pod)
        assert env["RUCIO_ACCOUNT"] == user, slug
        assert env["RUCIO_BASE_URL"].startswith("https://") and env["RUCIO_AUTH_URL"].startswith("https://")
        assert env["SITE_NAME"], "no SITE_NAME: Rucio would not hand out the site's cache replicas"


def test_no_token_in_the_pod_but_the_servers_own_hub_token(cluster):
    _, _, _, report = cluster
    assert len(report["auth_state_tokens"]) >= 7 * len(USERS)  # IAM's three, Rucio's and EOS's two each
    for user, slug, pod in every_pod(report):
        text = json.dumps(pod)
        assert not [t for t in report["auth_state_tokens"] if t in text], (user, slug)
        assert not re.search(r"eyJ[\w-]*\.[\w-]+\.", text), (user, slug)
        env = environment(pod)
        shaped = {
            name for name, value in env.items() if value and any(shape.fullmatch(value) for shape in TOKEN_SHAPES)
        }
        assert shaped == HUB_TOKEN_VARIABLES, (user, slug)
        assert {env[name] for name in shaped} == {report["api_tokens"][user]}
        assert all("valueFrom" not in e for e in notebook(pod)["env"])


def test_user_pods_are_restricted_and_cannot_reach_the_kubernetes_api(cluster):
    _, _, _, report = cluster
    for user, slug, pod in every_pod(report):
        spec = pod["spec"]
        assert restricted_violations(spec) == [], (user, slug)
        assert "initContainers" not in spec or spec["initContainers"] == []  # no block-cloud-metadata container
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        context = notebook(pod)["securityContext"]
        assert context["runAsUser"] != 0 and context["runAsNonRoot"] is True
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"]["drop"] == ["ALL"]
        assert spec["automountServiceAccountToken"] is False


@pytest.fixture(scope="module")
def production(overlays):
    built = overlays["production"]
    return release_values(built, "jupyterhub"), chart_version(built, "jupyterhub")


def with_profile(values: dict, index: int, profile: dict) -> dict:
    values = copy.deepcopy(values)
    values["singleuser"]["profileList"][index] = profile
    return values


def without(values: dict, *path: str) -> dict:
    values = copy.deepcopy(values)
    node = values
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return values


def root_profile(**override) -> dict:
    return {"display_name": "ROOT", "slug": "root", "kubespawner_override": override}


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda v: with_profile(v, 1, root_profile(imgae="ghcr.io/escape-dlaas/dlaas-singleuser-root:0.1.0")),
            "singleuser.profileList[1] (root).kubespawner_override.imgae: not a KubeSpawner trait",
        ),
        (
            lambda v: with_profile(
                v, 2, {"display_name": "Alma", "slug": "alma", "kubespawner_overide": {"image": "x:1"}}
            ),
            "singleuser.profileList[2] (alma).kubespawner_overide: not a key of a KubeSpawner profile",
        ),
        (
            lambda v: deep_merge(v, {"singleuser": {"storage": {"extraVolumeMount": []}}}),
            "singleuser.storage.extraVolumeMount: z2jh makes user pod settings of it",
        ),
        (
            lambda v: deep_merge(v, {"singleuser": {"lifecycleHooks": {"postStart": {}}}}),
            "singleuser.lifecycleHooks: z2jh makes user pod settings of it",
        ),
        (
            lambda v: deep_merge(v, {"hub": {"config": {"KubeSpawner": {"pod_security_context": "restricted"}}}}),
            "alice/base: TraitError: The 'pod_security_context' trait",
        ),
    ],
    ids=["override-key", "profile-key", "values-key", "key-not-replayed", "kubespawner-config-type"],
)
def test_a_broken_profile_or_values_key_fails(production, tmp_path, change, expected):
    values, chart = production
    code, report, stderr = user_pods_report(change(values), tmp_path, chart=chart)
    assert code == 1, stderr
    assert any(e.startswith(expected) for e in report["errors"]), report["errors"]


def test_a_profile_whose_pod_kubernetes_would_refuse_fails_validation(deploy, production, tmp_path):
    """KubeSpawner checks the top-level names of what it merges (extra_pod_config={"hostNetwrok": ...} fails in
    user_pods.py already), not what lies below them: the strict schema does."""
    values, chart = production
    broken = with_profile(values, 1, root_profile(extra_container_config={"securityContext": {"runAsNonRot": True}}))
    code, report, _ = user_pods_report(broken, tmp_path, chart=chart)
    assert code == 0, report["errors"]
    pod = report["pods"]["alice"]["root"]
    code, result = deploy.validate("-", stdin=json.dumps(pod))
    assert code == 1 and any("'runAsNonRot' was unexpected" in e for e in result["errors"]), result
    # extra_container_config replaces the container's securityContext: the restricted settings are gone too.
    assert "container notebook: capabilities do not drop ALL" in restricted_violations(pod["spec"])


@pytest.mark.parametrize(
    "change, profile, expected",
    [
        # z2jh's default: a privileged, root init container running iptables in every user pod.
        (
            lambda v: without(v, "singleuser", "cloudMetadata"),
            "base",
            ["container block-cloud-metadata: privileged", "container block-cloud-metadata: runAsUser: 0"],
        ),
        (
            lambda v: without(v, "hub", "config", "KubeSpawner", "container_security_context"),
            "base",
            ["container notebook: capabilities do not drop ALL"],
        ),
        (
            lambda v: with_profile(v, 1, root_profile(container_security_context={"allowPrivilegeEscalation": True})),
            "root",
            ["container notebook: allowPrivilegeEscalation is not false"],
        ),
    ],
    ids=["z2jh-default-iptables-init-container", "no-container-context", "profile-allows-escalation"],
)
def test_a_user_pod_without_our_security_settings_is_refused(production, tmp_path, change, profile, expected):
    values, chart = production
    code, report, _ = user_pods_report(change(values), tmp_path, chart=chart)
    assert code == 0, report["errors"]
    found = restricted_violations(report["pods"]["alice"][profile]["spec"])
    assert all(e in found for e in expected), found


def test_user_options_cannot_choose_what_the_profiles_do_not_offer(production, tmp_path):
    """A REST API spawn may send any user_options: KubeSpawner reads `profile` (and its profile_options) only."""
    values, chart = production
    options = {"profile": "root", "image": "evil/miner:latest", "cpu_limit": 64, "privileged": True}
    code, report, _ = user_pods_report(values, tmp_path, chart=chart, user_options=options)
    assert code == 0, report["errors"]
    pod = report["pods"]["alice"]["api"]
    assert notebook(pod)["image"].rpartition(":")[0].endswith("/dlaas-singleuser-root")
    assert "evil" not in json.dumps(pod)
    assert notebook(pod)["resources"]["limits"]["cpu"] == values["singleuser"]["cpu"]["limit"]
    assert restricted_violations(pod["spec"]) == []


def test_an_unknown_profile_is_refused(production, tmp_path):
    values, chart = production
    code, report, _ = user_pods_report(values, tmp_path, chart=chart, user_options={"profile": "gpu"})
    assert code == 1 and report["pods"] == {}
    # Refused by KubeSpawner's start(), or earlier - before the pre_spawn_hook, as HTTP 400 - by an
    # apply_user_options hook that has KubeSpawner load the options (then JupyterHub stops calling them unhandled).
    assert report["errors"] in (
        ["alice/api: ValueError: No such profile: gpu. Options include: base, root, alma"],
        ["alice/api: HTTPError: HTTP 400: Bad Request (Invalid user options)"],
    )
