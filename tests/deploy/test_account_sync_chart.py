"""charts/dlaas's account sync CronJob: every 10 minutes, one run at a time, a restricted pod with no API token whose
secrets come from existing Secrets (never the chart, never the command line or the environment), the real
dlaas-rucio-sync command line, and a NetworkPolicy that lets it reach DNS, the IAM and Rucio on 443 only."""

from __future__ import annotations

import tomllib

import pytest
import yaml

from dlaas_sync.cli import config_from, parser
from tests.deploy.conftest import CHARTS, IMAGES, REPO, docs, render
from tests.deploy.pod_security import restricted_violations

CHART = CHARTS / "dlaas"
NAME = "dlaas-account-sync"
DNS = {
    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


@pytest.fixture(scope="module")
def rendered(deploy):
    out = deploy.template(CHART, CHART / "ci" / "render-all-values.yaml")
    assert out.returncode == 0, out.stderr
    return docs(out.stdout)


def named(objects, kind, name=NAME):
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def pod_of(job):
    return job["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_the_cronjob_runs_every_ten_minutes_one_run_at_a_time_in_a_restricted_pod(rendered):
    job = named(rendered, "CronJob")
    assert job["metadata"]["namespace"] == "dlaas"
    assert job["spec"]["schedule"] == "*/10 * * * *"
    assert job["spec"]["concurrencyPolicy"] == "Forbid"
    assert job["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] < 600  # done before the next one starts
    pod = pod_of(job)
    assert restricted_violations(pod) == []
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    assert container["image"] == "ghcr.io/escape-dlaas/dlaas-hub:0.1.0"


def test_secrets_come_from_existing_secrets_as_files_never_from_the_command_line_or_environment(rendered):
    pod = pod_of(named(rendered, "CronJob"))
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert volumes["iam-client"]["secret"] == {
        "secretName": "dlaas-account-sync-iam",
        "defaultMode": 0o440,
        "items": [{"key": "client-secret", "path": "client-secret"}],
    }
    assert volumes["rucio-config"]["secret"] == {
        "secretName": "dlaas-account-sync-rucio",
        "defaultMode": 0o440,
        "items": [{"key": "rucio.cfg", "path": "rucio.cfg"}],
    }
    assert f"--client-secret-file={mounts['iam-client']}/client-secret" in container["command"]
    assert container["env"] == [{"name": "RUCIO_CONFIG", "value": f"{mounts['rucio-config']}/rucio.cfg"}]
    assert not [o for o in rendered if o["kind"] == "Secret"]
    assert "emptyDir" in volumes[next(n for n, p in mounts.items() if p == "/tmp")]  # rucio-clients' token cache


def test_the_command_line_is_the_real_console_script_and_says_what_the_values_say(rendered, tmp_path):
    (container,) = pod_of(named(rendered, "CronJob"))["containers"]
    command = container["command"]
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[command[0]] == "dlaas_sync.cli:main"
    secret = tmp_path / "client-secret"
    secret.write_text("from-the-secret\n")
    args = [f"--client-secret-file={secret}" if a.startswith("--client-secret-file=") else a for a in command[1:]]
    p = parser()
    config = config_from(p.parse_args(args), p)
    assert config.iam_url == "https://iam.example.org/" and config.client_id == "dlaas-account-sync"
    assert config.groups == ("escape/users", "escape/guests")
    assert config.limits == {"DLAAS-SCRATCH": 100 * 10**9, "EULAKE-1": 2**40}
    assert config.max_changes == 5 and config.client_secret == "from-the-secret"


def test_the_image_it_runs_carries_the_command():
    text = (IMAGES / "hub" / "Dockerfile").read_text()
    assert "COPY dlaas_sync ./dlaas_sync" in text and "command -v dlaas-rucio-sync" in text
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    assert "dlaas_sync*" in include


def test_it_reaches_dns_the_iam_and_rucio_on_443_and_nothing_else(rendered):
    job = named(rendered, "CronJob")
    policy = named(rendered, "NetworkPolicy")["spec"]
    labels = job["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in policy
    assert policy["egress"] == [
        DNS,
        {"to": [{"ipBlock": {"cidr": "198.51.100.20/32"}}], "ports": [{"protocol": "TCP", "port": 443}]},
        {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"protocol": "TCP", "port": 443}]},
    ]


def test_it_is_off_by_default(deploy, tmp_path):
    objects = render(deploy, {}, tmp_path)
    assert not [o for o in objects if o["metadata"]["name"] == NAME]


ENABLED = {
    "accountSync": {
        "enabled": True,
        "iamUrl": "https://iam.example.org/",
        "iamCIDRs": ["198.51.100.20/32"],
        "rucioCIDRs": ["203.0.113.0/24"],
    }
}


def test_enabled_with_the_defaults_it_gives_the_scratch_quota(deploy, tmp_path):
    (container,) = pod_of(named(render(deploy, ENABLED, tmp_path), "CronJob"))["containers"]
    assert "--limit=DLAAS-SCRATCH=100GB" in container["command"]
    assert "--group=escape/users" in container["command"] and "--max-changes=10" in container["command"]


def test_a_limit_in_bytes_is_passed_as_the_integer_it_is(deploy, tmp_path):
    values = {"accountSync": {**ENABLED["accountSync"], "limits": {"DLAAS-SCRATCH": 100_000_000_000}}}
    (container,) = pod_of(named(render(deploy, values, tmp_path), "CronJob"))["containers"]
    assert [a for a in container["command"] if a.startswith("--limit=")] == ["--limit=DLAAS-SCRATCH=100000000000"]


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({"accountSync": {"enabled": True, "iamUrl": "https://iam.example.org/"}}, "set accountSync.iamCIDRs"),
        ({"accountSync": {**ENABLED["accountSync"], "iamUrl": ""}}, "set accountSync.iamUrl"),
        ({"accountSync": {**ENABLED["accountSync"], "iamUrl": "http://iam.example.org/"}}, "iamUrl"),
        ({"accountSync": {**ENABLED["accountSync"], "limits": {"DLAAS-SCRATCH": "lots"}}}, "DLAAS-SCRATCH"),
        ({"accountSync": {**ENABLED["accountSync"], "limits": {"DLAAS-SCRATCH": -1}}}, "DLAAS-SCRATCH"),
        ({"accountSync": {**ENABLED["accountSync"], "group": ["escape/users"]}}, "group"),
        ({"accountSync": {**ENABLED["accountSync"], "groups": ["escape users"]}}, "groups"),
        ({"accountSync": {**ENABLED["accountSync"], "schedule": "every ten minutes"}}, "schedule"),
    ],
    ids=[
        "no-addresses",
        "no-iam",
        "plain-http-iam",
        "size-without-number",
        "negative-size",
        "misspelled-key",
        "group-with-a-space",
        "bad-cron",
    ],
)
def test_bad_values_fail_template(deploy, tmp_path, patch, needle):
    bad = tmp_path / "bad-values.yaml"
    bad.write_text(yaml.safe_dump(patch))
    out = deploy.template(CHART, bad)
    assert out.returncode != 0 and needle in out.stderr, out.stderr


def test_without_network_policies_no_addresses_are_needed(deploy, tmp_path):
    values = {
        "accountSync": {"enabled": True, "iamUrl": "https://iam.example.org/"},
        "networkPolicy": {"enabled": False},
    }
    objects = render(deploy, values, tmp_path)
    assert named(objects, "CronJob") and not [o for o in objects if o["kind"] == "NetworkPolicy"]
