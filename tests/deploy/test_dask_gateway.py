"""Dask Gateway on Kubernetes (flux/apps/base/dask-gateway), checked offline in every cluster's overlay.

The dask-gateway chart is in no registry reachable here, so its templates cannot be rendered: these tests check
what Flux hands the chart (the built HelmRelease and its values) against what the rest of the deployment and the
local data lake say - the release the local stack runs, the hub service and its token key, the users' images, the
Pod Security level of the namespace - and run the policy the values configure with the real
singleuser.dask_gateway_policy.
"""

from __future__ import annotations

import copy
import re
import tomllib

import pytest

from devstack import dask_gateway
from hub_plugins import hub_roles
from tests.deploy.conftest import ENVS, REPO, chart_version, hub_config_report, release_values

RELEASE = "dask-gateway"


def gateway_server_pin() -> str:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gateway"]
    [pin] = [r for r in extra if r.startswith("dask-gateway-server")]
    return pin.split("==")[1]


def gateway_config(values: dict):
    """The gateway's configuration after the values' extraConfig ran, the way the chart runs it: after its own
    settings, of which the clusters' image (gateway.backend.image) is the one the extraConfig reads."""
    from traitlets.config import Config

    image = values["gateway"]["backend"]["image"]
    c = Config()
    c.KubeClusterConfig.image = f"{image['name']}:{image['tag']}"
    for _, code in sorted(values["gateway"]["extraConfig"].items()):
        exec(compile(code, "extraConfig", "exec"), {"c": c})  # noqa: S102 - the values' own code, as the chart runs it
    return c


def offered_images(values: dict) -> set[str]:
    options = gateway_config(values).DataLakeKubeBackend.cluster_options
    [environment] = [f for f in options.get_specification() if f["field"] == "environment"]
    return {
        options.get_configuration(options.parse_options({"environment": name}), None)["image"]
        for name in environment["spec"]["options"]
    }


def problems(values: dict, hub_values: dict) -> list[str]:
    """What is wrong with the dask-gateway values, given the z2jh values of the same overlay."""
    found = []
    gw = values.get("gateway", {})
    jh = gw.get("auth", {}).get("jupyterhub", {})
    if gw.get("auth", {}).get("type") != "jupyterhub":
        found.append("gateway.auth.type is not jupyterhub: users must be the hub's")
    service = hub_values.get("hub", {}).get("services", {}).get(hub_roles.DASK_GATEWAY_SERVICE)
    if service is None:
        found.append(f"the hub has no service {hub_roles.DASK_GATEWAY_SERVICE}")
    if jh.get("apiTokenFromSecretName") != "hub" or jh.get("apiTokenFromSecretKey") != (
        f"hub.services.{hub_roles.DASK_GATEWAY_SERVICE}.apiToken"
    ):
        found.append("the gateway's hub API token is not the one z2jh generates for its service")
    if gw.get("prefix") != dask_gateway.PREFIX:
        found.append(f"gateway.prefix is not {dask_gateway.PREFIX}, where the hub's proxy routes the service")
    hub_image, gateway_image = hub_values["hub"]["image"], gw.get("image", {})
    if (gateway_image.get("name"), str(gateway_image.get("tag"))) != (hub_image["name"], str(hub_image["tag"])):
        found.append("the gateway server is not the hub image of this cluster (it carries the DLaaS policy)")
    singleuser = hub_values["singleuser"]["image"]
    image = gw.get("backend", {}).get("image", {})
    if (image.get("name"), str(image.get("tag"))) != (singleuser["name"], str(singleuser["tag"])):
        found.append("the clusters' default image is not the users' singleuser image")
    profile_images = {
        p["kubespawner_override"]["image"]
        for p in hub_values["singleuser"].get("profileList", [])
        if "image" in p.get("kubespawner_override", {})
    }
    offered = offered_images(values)
    if not offered <= profile_images | {f"{singleuser['name']}:{singleuser['tag']}"}:
        found.append(f"cluster environments {sorted(offered)} are not images the hub's profiles offer")
    for role in ("scheduler", "worker"):
        pod = gw.get("backend", {}).get(role, {}).get("extraPodConfig", {})
        container = gw.get("backend", {}).get(role, {}).get("extraContainerConfig", {})
        security = pod.get("securityContext", {})
        if not (security.get("runAsNonRoot") and security.get("seccompProfile", {}).get("type") == "RuntimeDefault"):
            found.append(f"{role} pods are not restricted (runAsNonRoot, seccomp RuntimeDefault)")
        csc = container.get("securityContext", {})
        if csc.get("allowPrivilegeEscalation") is not False or csc.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{role} containers may escalate or keep capabilities")
        if pod.get("automountServiceAccountToken") is not False:
            found.append(f"{role} pods get a Kubernetes API token")
    worker = gw.get("backend", {}).get("worker", {})
    token_dir = hub_values["hub"]["config"]["DataLakeEnvironment"]["token_dir"]
    volumes = {v["name"]: v for v in worker.get("extraPodConfig", {}).get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in worker.get("extraContainerConfig", {}).get("volumeMounts", [])}
    if volumes.get(mounts.get(token_dir), {}).get("emptyDir", {}).get("medium") != "Memory":
        found.append(f"workers' {token_dir} is not a memory-backed emptyDir: token files would reach a disk")
    return found


@pytest.mark.parametrize("env", ENVS)
def test_every_cluster_runs_the_gateway_release_of_the_local_data_lake(overlays, env):
    assert chart_version(overlays[env], RELEASE) == gateway_server_pin()


@pytest.mark.parametrize("env", ENVS)
def test_the_gateway_authenticates_through_our_hub_and_runs_the_users_images_restricted(overlays, env):
    values = release_values(overlays[env], RELEASE)
    hub_values = release_values(overlays[env], "jupyterhub")
    assert problems(values, hub_values) == []


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda v, h: v["gateway"]["auth"].update(type="simple"), "gateway.auth.type is not jupyterhub"),
        (lambda v, h: h["hub"]["services"].pop("dask-gateway"), "the hub has no service dask-gateway"),
        (lambda v, h: v["gateway"]["backend"]["image"].update(tag="latest"), "not the users' singleuser image"),
        (
            lambda v, h: v["gateway"]["backend"]["worker"]["extraPodConfig"]["volumes"][0]["emptyDir"].pop("medium"),
            "is not a memory-backed emptyDir",
        ),
        (
            lambda v, h: v["gateway"]["backend"]["scheduler"]["extraPodConfig"]["securityContext"].pop("runAsNonRoot"),
            "scheduler pods are not restricted",
        ),
    ],
    ids=["auth", "hub-service", "image", "token-volume", "security"],
)
def test_a_gateway_values_mistake_is_caught(overlays, edit, expected):
    values = copy.deepcopy(release_values(overlays["production"], RELEASE))
    hub_values = copy.deepcopy(release_values(overlays["production"], "jupyterhub"))
    edit(values, hub_values)
    assert any(expected in p for p in problems(values, hub_values)), problems(values, hub_values)


def test_the_options_the_values_configure_are_bounded_by_the_gateway(overlays):
    """The extraConfig's policy, built by the real singleuser.dask_gateway_policy: what users may ask for."""
    c = gateway_config(release_values(overlays["production"], RELEASE))
    assert c.DaskGateway.backend_class.__name__ == "DataLakeKubeBackend"
    assert c.ClusterConfig.cluster_max_workers == 8 and c.DataLakeBackendMixin.max_clusters_per_user == 2
    options = c.DataLakeKubeBackend.cluster_options
    spec = {field["field"]: field for field in options.get_specification()}
    assert spec["environment"]["spec"]["options"] == ["base", "root"]
    assert spec["worker_cores"]["spec"]["max"] == 2 and spec["worker_memory"]["spec"]["max"] == 4
    with pytest.raises(ValueError, match="'everything' is not a valid option for environment"):
        options.parse_options({"environment": "everything"})
    with pytest.raises(ValueError, match="worker_cores"):
        options.parse_options({"worker_cores": 16})
    chosen = options.get_configuration(options.parse_options({"environment": "root", "worker_memory": 2}), None)
    assert chosen["image"] == "ghcr.io/escape-dlaas/dlaas-singleuser-root:0.1.0"
    assert chosen["worker_memory"] == 2 * 2**30


def test_the_hub_gives_the_gateway_service_a_role_that_reads_servers_and_nothing_else(overlays, tmp_path):
    code, report, stderr = hub_config_report(release_values(overlays["production"], "jupyterhub"), tmp_path)
    assert code == 0, report["errors"] or stderr
    [role] = [r for r in report["load_roles"] if r["name"] == hub_roles.DASK_GATEWAY_SERVICE]
    assert role["scopes"] == ["read:servers"] and role["services"] == [hub_roles.DASK_GATEWAY_SERVICE]
    assert hub_roles.DASK_GATEWAY_ACCESS in report["server_token_scopes"]


def test_the_gateway_server_image_carries_dask_gateway_server_and_the_user_images_the_dask_config():
    """The values run the gateway from the hub image: it must install the `gateway` extra. User images carry the
    Dask configuration that makes clients authenticate with the server's hub API token."""
    hub = (REPO / "images" / "hub" / "Dockerfile").read_text()
    [extras] = re.findall(r"^ARG DLAAS_EXTRAS=(\S+)$", hub, re.M)
    assert "gateway" in extras.split(",")
    for image in ("singleuser", "singleuser-alma"):
        text = (REPO / "images" / image / "Dockerfile").read_text()
        assert re.search(r"^COPY singleuser/dask\.yaml \S+/etc/dask/dlaas\.yaml$", text, re.M), image


@pytest.mark.parametrize("env", ENVS)
def test_workers_reach_the_cache_and_public_storage_doors_only(overlays, env):
    import yaml

    built = overlays[env]
    [policy] = [d for d in built if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "dask-clusters"]
    spec = policy["spec"]
    assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "dask-gateway"}
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    blocks = [peer["ipBlock"] for rule in spec["egress"] for peer in rule.get("to", []) if "ipBlock" in peer]
    assert blocks and all(
        {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(b.get("except", [])) for b in blocks
    ), "workers could reach the cluster's private addresses or the cloud metadata server"
    namespaces = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in spec["egress"]
        for peer in rule.get("to", [])
        if "namespaceSelector" in peer
    }
    assert namespaces == {"kube-system", "dlaas-cache"}  # DNS and the XCache, no other namespace
    # The cache admits users' pods by the dlaas chart's label: the workers carry it.
    chart_defaults = yaml.safe_load((REPO / "charts" / "dlaas" / "values.yaml").read_text())
    user_labels = release_values(built, "dlaas").get("singleuserPodLabels", chart_defaults["singleuserPodLabels"])
    c = gateway_config(release_values(built, RELEASE))
    assert c.KubeClusterConfig.worker_extra_pod_labels == user_labels
