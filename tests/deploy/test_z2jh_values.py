"""The z2jh values Flux hands to the jupyterhub HelmRelease of each cluster: only keys z2jh has, the hub config
loads in a real JupyterHub with the escape-iam authenticator, and the user pods get what DLaaS needs (profiles,
shared home with per-user subPath, EOS through its claim with HostToContainer, their own /scratch directory,
memory-backed token dir, no token in env), no admins, the registrar registered and reachable."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.conftest import ENVS, FLUX, deep_merge, docs, hub_config_report, release_values
from tests.deploy.z2jh_keys import unknown_keys


@pytest.fixture(scope="module", params=ENVS)
def env_values(request, deploy):
    r = deploy.kustomize(FLUX / "apps" / request.param)
    assert r.returncode == 0, r.stderr
    built = docs(r.stdout)
    return request.param, release_values(built, "jupyterhub"), release_values(built, "dlaas")


def test_only_known_z2jh_keys(env_values):
    _, values, _ = env_values
    assert unknown_keys(values) == []


@pytest.mark.parametrize(
    "patch, expected",
    [
        ({"singleuser": {"profilelist": []}}, "singleuser.profilelist"),
        ({"cull": {"timout": 60}}, "cull.timout"),
        (
            {"hub": {"networkPolicy": {"egressAllowRules": {"privateIps": True}}}},
            "hub.networkPolicy.egressAllowRules.privateIps",
        ),
        ({"singleuser": {"storage": {"static": "dlaas-home"}}}, "singleuser.storage.static (z2jh expects a mapping)"),
        (
            {"scheduling": {"userScheduler": {"containerSecurityContex": {}}}},
            "scheduling.userScheduler.containerSecurityContex",
        ),
        ({"singleuser": {"containerSecurityContext": {}}}, "singleuser.containerSecurityContext"),
        ({"singleuser": {"extraContainerConfig": {}}}, "singleuser.extraContainerConfig"),
    ],
)
def test_a_misspelled_z2jh_key_fails(patch, expected):
    base = yaml.safe_load((FLUX / "apps" / "base" / "jupyterhub" / "values.yaml").read_text())
    assert unknown_keys(deep_merge(base, patch)) == [expected]


def test_the_hub_config_loads_in_a_real_jupyterhub(env_values, tmp_path):
    env, values, dlaas_values = env_values
    code, report, stderr = hub_config_report(values, tmp_path)
    assert code == 0, report["errors"] or stderr
    assert report["authenticator_class"] == "hub_plugins.authenticator.EscapeIAMAuthenticator"
    auth = report["authenticator"]
    assert auth["issuer"].endswith("/") and auth["enable_auth_state"] and auth["manage_groups"]
    assert auth["client_secret_set"]  # from OAUTH_CLIENT_SECRET, i.e. the Secret, not the values
    host = values["ingress"]["hosts"][0]
    assert auth["client_id"] == values["hub"]["config"]["EscapeIAMAuthenticator"]["client_id"]
    assert (
        values["hub"]["config"]["EscapeIAMAuthenticator"]["oauth_callback_url"] == f"https://{host}/hub/oauth_callback"
    )
    assert set(auth["exchange_targets"]) == {"rucio", "eos"}
    assert "/api/dlaas/tokens" in auth["handlers"]
    # The shared glue (roles included) comes from hub_plugins.hub_config, applied last; nothing hand-written here.
    assert "loadRoles" not in values["hub"]
    assert "configure(c)" in values["hub"]["extraConfig"][sorted(values["hub"]["extraConfig"])[-1]]
    assert report["custom_scopes"] == ["custom:dlaas-tokens"]
    assert "access:services!service=dlaas-registrar" in report["server_token_scopes"]
    user_role = next(r for r in report["load_roles"] if r["name"] == "user")
    assert "access:services!service=dlaas-registrar" in user_role["scopes"]
    assert not [s for s in user_role["scopes"] if s.partition("!")[0] == "custom:dlaas-tokens" and "!" not in s]
    assert report["pre_spawn_hook"] == "hub_plugins.spawner_env.apply"
    # IAM administrators do not become hub admins (the admin role reads auth_state and mints tokens).
    assert auth["admin_groups"] == [] and report["admin_users"] == []
    assert not {"admin_groups", "admin_users"} & set(values["hub"]["config"]["EscapeIAMAuthenticator"])
    assert not {"admin_groups", "admin_users"} & set(values["hub"]["config"].get("Authenticator", {}))
    operator = next(r for r in report["load_roles"] if r["name"] == "dlaas-operator")
    assert operator["groups"] == ["escape/dlaas-admins"]
    assert not {"admin:auth_state", "admin:users", "tokens", "access:servers"} & set(operator["scopes"])
    # User names become directory names (the scratch subPath): one safe component, matched in full.
    assert report["username_accepted"] == {
        "alice": True,
        "john.doe": True,
        "j_doe-2": True,
        "../bob": False,
        "bob/x": False,
        "alice\n": False,
        "Alice": False,
        ".hidden": False,
        "a" * 65: False,
    }
    # The EOS audience the hub exchanges for is the one the EOS FUSEx mount is configured for.
    assert auth["exchange_targets"]["eos"]["audience"] == dlaas_values["eos"]["oauth2"]["audience"]

    # The user's server environment: paths into the memory-backed token dir, never a token.
    user_env = report["user_environment"]
    mounts = {m["name"]: m for m in values["singleuser"]["storage"]["extraVolumeMounts"]}
    volumes = {v["name"]: v for v in values["singleuser"]["storage"]["extraVolumes"]}
    # Inside the memory-backed mount, not its mount point: the server creates the directory itself, 0700 and its own.
    token_mount = next(
        m for m in mounts.values() if user_env["DLAAS_TOKEN_DIR"].startswith(m["mountPath"].rstrip("/") + "/")
    )
    assert volumes[token_mount["name"]]["emptyDir"]["medium"] == "Memory"
    assert user_env["DLAAS_TOKEN_DIR"] not in {m["mountPath"] for m in mounts.values()}
    assert user_env["BEARER_TOKEN_FILE"].startswith(user_env["DLAAS_TOKEN_DIR"] + "/")
    assert user_env["OAUTH2_TOKEN"].startswith("FILE:" + user_env["DLAAS_TOKEN_DIR"] + "/")
    assert user_env["RUCIO_RSE_MOUNT_PATH"].startswith(mounts["eos"]["mountPath"])
    for name, value in user_env.items():
        assert "token" not in name.lower() or value.startswith(("/", "FILE:/", "http")), name


def test_a_broken_hub_config_fails_to_load(tmp_path):
    values = yaml.safe_load((FLUX / "apps" / "base" / "jupyterhub" / "values.yaml").read_text())
    bad = deep_merge(values, {"hub": {"config": {"EscapeIAMAuthenticator": {"exchange_target": {}}}}})
    code, report, _ = hub_config_report(bad, tmp_path)
    assert code == 1
    assert report["errors"] == [
        "hub.config.EscapeIAMAuthenticator.exchange_target: not a configurable trait of EscapeIAMAuthenticator"
    ]
    bad = deep_merge(
        values,
        {
            "hub": {
                "services": {"dlaas-registrar": {"urll": "http://x:1"}},
                "config": {"KubeSpawner": {"container_securty_context": {}}},
            }
        },
    )
    code, report, _ = hub_config_report(bad, tmp_path)
    assert code == 1
    assert report["errors"] == [
        "hub.services.dlaas-registrar.urll: not a field of a JupyterHub service",
        "hub.config.KubeSpawner.container_securty_context: not a configurable trait of KubeSpawner",
    ]
    bad = deep_merge(
        values, {"hub": {"config": {"EscapeIAMAuthenticator": {"exchange_targets": {"rucio": {"audiance": "rucio"}}}}}}
    )
    code, report, _ = hub_config_report(bad, tmp_path)
    assert code == 1
    assert report["errors"][0].startswith("the authenticator refuses the configuration")
    assert "'audiance'" in report["errors"][0]


def test_no_secret_or_token_in_the_values(env_values):
    _, values, _ = env_values
    for name, spec in values["hub"]["extraEnv"].items():
        assert set(spec) == {"valueFrom"}, f"hub.extraEnv.{name} must come from a Secret"
        assert spec["valueFrom"]["secretKeyRef"]["name"] == "dlaas-hub"
    assert "extraEnv" not in values["singleuser"]  # the user environment comes from hub_plugins, token-free
    for name, service in values["hub"].get("services", {}).items():  # z2jh generates the tokens into its Secret
        assert not {"api_token", "apiToken"} & set(service), f"hub.services.{name} holds a token"
    assert "client_secret" not in values["hub"]["config"]["EscapeIAMAuthenticator"]
    assert "cookieSecret" not in values["hub"] and "secretToken" not in values.get("proxy", {})


def test_user_pods_storage_profiles_culling_and_network(env_values):
    env, values, dlaas_values = env_values
    su = values["singleuser"]
    assert [p["slug"] for p in su["profileList"]] == ["base", "root", "alma"]
    assert sum(bool(p.get("default")) for p in su["profileList"]) == 1
    images = [p.get("kubespawner_override", {}).get("image") for p in su["profileList"][1:]]
    assert images[0].split(":")[0].endswith("dlaas-singleuser-root")
    assert images[1].split(":")[0].endswith("dlaas-singleuser-alma")
    # One shared home volume, each user in a subPath.
    assert su["storage"]["type"] == "static"
    assert "{username}" in su["storage"]["static"]["subPath"]
    mounts = {m["name"]: m for m in su["storage"]["extraVolumeMounts"]}
    volumes = {v["name"]: v for v in su["storage"]["extraVolumes"]}
    # EOS and scratch through the dlaas chart's claims (no hostPath: the namespace is restricted).
    assert volumes["eos"] == {"name": "eos", "persistentVolumeClaim": {"claimName": dlaas_values["eos"]["dataClaim"]}}
    assert mounts["eos"]["mountPropagation"] == "HostToContainer"
    assert volumes["scratch"]["persistentVolumeClaim"]["claimName"] == dlaas_values["scratch"]["claimName"]
    assert mounts["scratch"]["mountPath"] == "/scratch" and mounts["scratch"]["subPath"] == "{unescaped_username}"
    assert values["hub"]["config"]["DataLakeEnvironment"]["scratch_mount"] == "/scratch"
    # Idle servers are culled; users are not.
    assert values["cull"]["enabled"] is True and 0 < values["cull"]["timeout"] <= 4 * 3600
    assert values["cull"]["users"] is False
    # Network policies on; the cache (another namespace) and the registrar reachable on their ports.
    netpol = su["networkPolicy"]
    assert netpol["enabled"] and values["hub"]["networkPolicy"]["enabled"]
    cache, registrar = netpol["egress"]
    assert cache["ports"] == [{"protocol": "TCP", "port": 1094}]
    assert cache["to"][0]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": dlaas_values["namespaces"]["cache"]}
    }
    assert registrar["ports"] == [{"protocol": "TCP", "port": 8090}]
    assert registrar["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "registrar"
    # The overlay changed the image version and the host, and nothing else dropped out of the base.
    assert values["hub"]["image"]["tag"] == su["image"]["tag"]


METADATA = ipaddress.ip_address("169.254.169.254")


def test_cloud_metadata_is_blocked_by_the_network_policy_not_a_privileged_init_container(env_values):
    _, values, _ = env_values
    su = values["singleuser"]
    # z2jh's default (true) adds a privileged, root init container to every user pod.
    assert su["cloudMetadata"]["blockWithIptables"] is False
    netpol = su["networkPolicy"]
    assert netpol["enabled"] is True
    rules = netpol["egressAllowRules"]
    assert rules["cloudMetadataServer"] is False and rules["dnsPortsCloudMetadataServer"] is False
    # nonPrivateIPs leaves the metadata server out (z2jh); no rule of ours lets it back in.
    for rule in netpol["egress"]:
        for peer in rule["to"]:
            block = peer.get("ipBlock")
            if block and METADATA in ipaddress.ip_network(block["cidr"]):
                assert any(METADATA in ipaddress.ip_network(e) for e in block.get("except", [])), rule


def test_the_registrar_is_a_hub_service_reached_at_its_own_service(env_values):
    _, values, dlaas_values = env_values
    registrar = dlaas_values["registrar"]
    name = "dlaas-registrar"
    service = values["hub"]["services"][name]
    # The registrar reads the token z2jh generates for this service name.
    assert registrar["hubApiToken"] == {"existingSecret": "hub", "key": f"hub.services.{name}.apiToken"}
    url = urlsplit(values["hub"]["config"]["DataLakeEnvironment"]["registrar_url"])
    # Straight to the Service (the dlaas chart's, port 8090), under the prefix the hub gives the service.
    assert (url.scheme, url.hostname, url.port, url.path) == ("http", name, 8090, f"/services/{name}/")
    assert urlsplit(service["url"])[:2] == ("http", f"{name}:8090")
    # The scratch RSE is the one the registrar registers on, and not one any account may register on.
    scratch_rse = values["hub"]["config"]["DataLakeEnvironment"]["scratch_rse"]
    assert scratch_rse == registrar["scratchRse"] == "DLAAS-SCRATCH"
    assert not scratch_rse.endswith("SCRATCHDISK")
