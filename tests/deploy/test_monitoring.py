"""Monitoring in the chart, checked offline: the Grafana dashboard asks only for metrics our code (and JupyterHub)
really exports - a renamed metric would otherwise leave an empty panel nobody notices - and so do the alert
expressions of docs/operations.md; the ServiceMonitors send the read:metrics token of the hub's `prometheus`
service; the XCache exporter runs beside the cache, receives what the cache's configuration sends it, and its
port admits the monitoring namespace only."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml

from tests.deploy.conftest import CHARTS, FLUX, REPO, docs
from tests.deploy.pod_security import restricted_violations

CHART = CHARTS / "dlaas"
DASHBOARD = CHART / "dashboards" / "dlaas.json"
TOKEN_SECRET = {"name": "hub", "key": "hub.services.prometheus.apiToken"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}


def exported_names() -> set[str]:
    """Every sample name the hub, the registration service, the XCache exporter and the account sync expose."""
    import jupyterhub.metrics  # noqa: F401 - JupyterHub's own, on the same /hub/metrics
    from prometheus_client import REGISTRY

    import dlaas_registrar.metrics  # noqa: F401
    import hub_plugins.metrics  # noqa: F401
    from dlaas_sync.metrics_file import RunCollector
    from dlaas_sync.sync import Report
    from dlaas_xcache.exporter import CacheMetrics

    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("_count", "_sum", "_created", ""),
        "info": ("_info",),
    }
    families = [
        *REGISTRY.collect(),
        *CacheMetrics().registry.collect(),
        *RunCollector(Report(), started=0.0, finished=1.0, before={}).collect(),
    ]
    return {f.name + suffix for f in families for suffix in suffixes.get(f.type, ("",))}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, strings, ranges and groupings left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):  # not the unit of a number (1h, 1e3)
        rest = text[m.end() :].lstrip()
        if m.group() in PROMQL_WORDS or rest.startswith("("):
            continue  # a keyword, a function or an aggregation
        names.add(m.group())
    return names


def dashboard_exprs(dashboard: dict) -> list[str]:
    panels = [p for p in dashboard["panels"] for p in (p, *p.get("panels", []))]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


@pytest.fixture(scope="module")
def exported():
    return exported_names()


@pytest.fixture(scope="module")
def rendered(deploy):
    out = deploy.template(CHART, CHART / "ci" / "render-all-values.yaml")
    assert out.returncode == 0, out.stderr
    return docs(out.stdout)


def find(objects, kind, name):
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_the_metric_name_parser_sees_what_a_query_reads():
    expr = 'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="b c"}[5m]))) / ignoring(x) b_total offset 1h'
    assert metric_names(expr) == {"a_bucket", "b_total"}
    assert metric_names("time() - max(c_seconds)") == {"c_seconds"}


def test_every_dashboard_query_uses_only_metrics_the_code_exports(exported):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = dashboard_exprs(dashboard)
    assert len(exprs) >= 20
    unknown = {expr: sorted(metric_names(expr) - exported) for expr in exprs if metric_names(expr) - exported}
    assert unknown == {}
    used = set().union(*map(metric_names, exprs))
    for family in ("dlaas_logins", "dlaas_token_exchange", "dlaas_registrar_", "dlaas_xcache_", "dlaas_sync_"):
        assert any(name.startswith(family) for name in used), f"no panel shows {family}*"


def test_every_alert_expression_in_the_operations_guide_uses_only_exported_metrics(exported):
    text = (REPO / "docs" / "operations.md").read_text()
    section = text.split("## What to watch", 1)[1]
    exprs = [
        m.group(1).replace("\\|", "|")
        for line in section.splitlines()
        if line.startswith("| ")
        for m in [re.match(r"\|[^|]*\| `((?:[^`])+)` \|", line)]
        if m
    ]
    assert len(exprs) >= 10
    unknown = {expr: sorted(metric_names(expr) - exported) for expr in exprs if metric_names(expr) - exported}
    assert unknown == {}


def test_the_dashboard_configmap_carries_the_dashboard_and_the_grafana_label(rendered):
    cm = find(rendered, "ConfigMap", "dlaas-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["dlaas.json"]) == json.loads(DASHBOARD.read_text())


def test_hub_and_registrar_are_scraped_with_the_prometheus_services_token(rendered):
    hub = find(rendered, "ServiceMonitor", "dlaas-hub")
    assert hub["metadata"]["namespace"] == "dlaas"
    assert hub["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert hub["spec"]["selector"] == {"matchLabels": {"app": "jupyterhub", "component": "hub"}}
    [endpoint] = hub["spec"]["endpoints"]
    assert endpoint["path"] == "/hub/metrics" and endpoint["port"] == "hub"
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": TOKEN_SECRET}

    registrar = find(rendered, "ServiceMonitor", "dlaas-registrar")
    [endpoint] = registrar["spec"]["endpoints"]
    assert endpoint["path"] == "/services/dlaas-registrar/metrics"
    assert endpoint["authorization"] == {"type": "Bearer", "credentials": TOKEN_SECRET}
    service = find(rendered, "Service", "dlaas-registrar")
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert registrar["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]


def test_the_z2jh_values_give_prometheus_a_hub_service_that_only_reads_metrics():
    from traitlets.config import Config

    from hub_plugins import hub_roles

    values = yaml.safe_load((FLUX / "apps" / "base" / "jupyterhub" / "values.yaml").read_text())
    assert "prometheus" in values["hub"]["services"] and "url" not in values["hub"]["services"]["prometheus"]
    [rule] = values["hub"]["networkPolicy"]["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert rule["ports"] == [{"port": 8081, "protocol": "TCP"}]
    # Its role comes from the shared glue (hub_plugins.hub_roles, applied last in every hub configuration).
    c = Config()
    c.JupyterHub.services = [{"name": "prometheus"}, {"name": "dlaas-registrar", "url": "http://registrar:8090"}]
    hub_roles.apply(c)
    [role] = [r for r in c.JupyterHub.load_roles if r["name"] == "prometheus"]
    assert role == {"name": "prometheus", "services": ["prometheus"], "scopes": ["read:metrics"]}
    without = Config()
    hub_roles.apply(without)
    assert "prometheus" not in {r["name"] for r in without.JupyterHub.load_roles}


def test_the_xcache_exporter_runs_beside_the_cache_and_gets_its_reports(rendered):
    from dlaas_xcache.exporter import cache_directives

    deployment = find(rendered, "Deployment", "dlaas-xcache")
    pod = deployment["spec"]["template"]["spec"]
    assert restricted_violations(pod) == []
    exporter = next(c for c in pod["containers"] if c["name"] == "exporter")
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[exporter["command"][0]] == "dlaas_xcache.exporter:main"
    udp = exporter["command"][exporter["command"].index("--udp") + 1]
    assert udp.startswith("127.0.0.1:")  # the pod's loopback: nothing outside the pod can feed it
    assert exporter["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "metrics", "containerPort": 9932, "protocol": "TCP"} in exporter["ports"]

    config = find(rendered, "ConfigMap", "dlaas-xcache")["data"]["xcache.cfg"].splitlines()
    cont = next(i for i, line in enumerate(config) if line.startswith("continue "))
    assert all(line in config[:cont] for line in cache_directives(udp))  # xrootd reads nothing after `continue`

    monitor = find(rendered, "PodMonitor", "dlaas-xcache")
    assert monitor["metadata"]["namespace"] == "dlaas-cache"
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_only_the_monitoring_namespace_reaches_the_exporters_port(rendered):
    policy = find(rendered, "NetworkPolicy", "dlaas-xcache")
    rules = [r for r in policy["spec"]["ingress"] if any(p["port"] == 9932 for p in r["ports"])]
    assert rules == [
        {
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "ports": [{"protocol": "TCP", "port": 9932}],
        }
    ]
    # User pods reach the cache's xrootd port, nothing else.
    users = [r for r in policy["spec"]["ingress"] if r not in rules]
    assert [p["port"] for r in users for p in r["ports"]] == [1094]
    registrar = find(rendered, "NetworkPolicy", "dlaas-registrar")
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in [
        peer for r in registrar["spec"]["ingress"] for peer in r["from"]
    ]


def test_without_monitoring_no_operator_objects_are_rendered(deploy):
    out = deploy.template(CHART)
    assert out.returncode == 0, out.stderr
    objects = docs(out.stdout)
    assert not [o for o in objects if o["apiVersion"].startswith("monitoring.coreos.com/")]
    assert not [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-dashboard")]
    registrar = find(objects, "NetworkPolicy", "dlaas-registrar")
    assert "monitoring" not in json.dumps(registrar["spec"]["ingress"])


def test_the_operator_objects_have_only_fields_the_operator_knows(rendered):
    # No offline schema of the Prometheus Operator's CRDs (tests/deploy/manifest_check.py skips them): the fields
    # we use, closed, so a misspelled one fails here instead of being pruned by the API server.
    endpoint_fields = {"port", "path", "interval", "authorization"}
    for o in rendered:
        if o["apiVersion"] != "monitoring.coreos.com/v1":
            continue
        assert set(o) == {"apiVersion", "kind", "metadata", "spec"}
        key = {"ServiceMonitor": "endpoints", "PodMonitor": "podMetricsEndpoints"}[o["kind"]]
        assert set(o["spec"]) == {"selector", key}
        for endpoint in o["spec"][key]:
            assert set(endpoint) <= endpoint_fields, endpoint
            assert set(endpoint.get("authorization", {})) <= {"type", "credentials"}
