"""deploy/components/monitoring: the ServiceMonitors reach the metrics ports the programs
serve, the alert rules and the dashboard ask only for metrics that exist (docs/monitoring.md,
itself checked against real scrapes in tests/logsvc/test_metrics.py), and everything renders
and validates when an overlay takes the component. Each check is also fed a broken render."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import metricnames
from tests.deploy import checks
from tests.deploy.manifests import (
    DEPLOY,
    Doc,
    containers,
    kubectl,
    label_selector_matches,
    of_kind,
    one,
    parse,
    pod_labels,
    port_of,
    workloads,
)

COMPONENT = DEPLOY / "components" / "monitoring"
# Names the rules may use that memlog does not export: Prometheus's own and the process
# collector's (prometheus-client).
FOREIGN = {"up"}
FOREIGN_PREFIXES = ("process_",)
PROMQL_WORDS = {
    "sum", "max", "min", "count", "rate", "increase", "histogram_quantile", "by", "and", "or",
    "le", "without", "avg",
}  # fmt: skip


def render_with_monitoring(tmp_path: Path, overlay: str = "production") -> list[Doc]:
    """An overlay with the component added, as its README says to add it."""
    here = tmp_path / "with-monitoring"
    here.mkdir()

    def rel(path: Path) -> str:  # kustomize takes only relative paths
        return os.path.relpath(path, here)

    (here / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "namespace: memlog\n"
        f"resources:\n  - {rel(DEPLOY / 'overlays' / overlay)}\n"
        f"components:\n  - {rel(COMPONENT)}\n"
    )
    out = subprocess.run(
        [kubectl(), "kustomize", str(here)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return parse(out.stdout)


def dashboard(docs: list[Doc]) -> dict[str, object]:
    config_map = one(docs, "ConfigMap", "memlog-grafana-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    loaded: dict[str, object] = json.loads(config_map["data"]["memlog-dashboard.json"])
    return loaded


def expressions(docs: list[Doc]) -> list[str]:
    """Every PromQL expression of the alert rules and of the dashboard's panels."""
    found = [
        rule["expr"]
        for rules in of_kind(docs, "PrometheusRule")
        for group in rules["spec"]["groups"]
        for rule in group["rules"]
    ]
    for panel in dashboard(docs)["panels"]:  # type: ignore[attr-defined]
        found += [target["expr"] for target in panel.get("targets", [])]
    return found


def check_metric_names(docs: list[Doc]) -> list[str]:
    """Each metric an expression asks for is documented (so exported), and each `job` it
    names is a Service a ServiceMonitor scrapes."""
    known = metricnames.documented()
    monitored = {
        svc["metadata"]["name"]
        for svc in of_kind(docs, "Service")
        for sm in of_kind(docs, "ServiceMonitor")
        if label_selector_matches(sm["spec"]["selector"], svc["metadata"].get("labels", {}))
    }
    problems: list[str] = []
    for expr in expressions(docs):
        bare = re.sub(r'"[^"]*"', '""', expr)  # label values are not names
        bare = re.sub(r"\[[0-9a-z]+\]", "", bare)  # nor range durations
        bare = re.sub(r"\{[^}]*\}", "", bare)  # nor label names
        bare = re.sub(r"by \([^)]*\)", "", bare)
        for name in re.findall(r"\b[a-z_][a-z0-9_]*\b", bare):
            if name in PROMQL_WORDS or name in FOREIGN or name.startswith(FOREIGN_PREFIXES):
                continue
            if metricnames.family(name) not in known and name not in known:
                problems.append(f"{expr!r} asks for {name}, which memlog does not export")
        for job in re.findall(r'job="([^"]*)"', expr):
            if job not in monitored:
                problems.append(f"{expr!r} names job {job}, which no ServiceMonitor scrapes")
    return problems


def check_service_monitors(docs: list[Doc]) -> list[str]:
    """Each ServiceMonitor selects Services of one program whose named endpoint port leads
    to a declared container port of that program's pods."""
    problems: list[str] = []
    for sm in of_kind(docs, "ServiceMonitor"):
        name = sm["metadata"]["name"]
        services = [
            s for s in of_kind(docs, "Service")
            if label_selector_matches(sm["spec"]["selector"], s["metadata"].get("labels", {}))
        ]  # fmt: skip
        if not services:
            problems.append(f"ServiceMonitor {name} selects no Service")
        for svc in services:
            pods = checks.selected_by_service(docs, svc)
            programs = {pod_labels(w).get("app.kubernetes.io/component") for w in pods}
            if len(programs) != 1:
                problems.append(f"Service {svc['metadata']['name']} selects {programs}")
            for endpoint in sm["spec"]["endpoints"]:
                port = next(
                    (p for p in svc["spec"]["ports"] if p.get("name") == endpoint["port"]), None
                )
                if port is None:
                    problems.append(
                        f"ServiceMonitor {name}: Service {svc['metadata']['name']} has no port "
                        f"named {endpoint['port']}"
                    )
                    continue
                for w in pods:
                    if not any(port_of(c, port["targetPort"]) for c in containers(w)):
                        problems.append(
                            f"ServiceMonitor {name}: {w['metadata']['name']} declares no port "
                            f"{port['targetPort']!r}"
                        )
    return problems


def test_an_overlay_with_monitoring_renders_and_validates(tmp_path: Path) -> None:
    docs = render_with_monitoring(tmp_path)
    added = [
        d for d in docs
        if d["kind"] in ("ServiceMonitor", "PrometheusRule")
        or d["metadata"]["name"] in ("memlog-log-metrics", "memlog-shim-metrics",
                                     "memlog-grafana-dashboard")
    ]  # fmt: skip
    assert sorted(d["kind"] for d in added) == [
        "ConfigMap", "PrometheusRule", "Service", "Service", "ServiceMonitor", "ServiceMonitor"
    ]  # fmt: skip
    assert all(d["metadata"]["namespace"] == "memlog" for d in added)
    assert checks.check_schemas(added) == []
    # The workloads are untouched by the component: the overlay's checks still hold.
    assert checks.check_ports(docs) == []
    assert checks.check_selectors(docs) == []


def test_service_monitors_reach_the_metrics_ports(tmp_path: Path) -> None:
    docs = render_with_monitoring(tmp_path)
    assert check_service_monitors(docs) == []
    assert len(workloads(docs)) >= 2


def test_rules_and_dashboard_ask_for_exported_metrics(tmp_path: Path) -> None:
    docs = render_with_monitoring(tmp_path)
    assert len(expressions(docs)) > 20
    assert check_metric_names(docs) == []


def test_dashboard_is_well_formed(tmp_path: Path) -> None:
    board = dashboard(render_with_monitoring(tmp_path, "kind"))
    panels = board["panels"]
    assert isinstance(panels, list)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"


def test_the_schemas_catch_a_misspelt_rule_field(tmp_path: Path) -> None:
    docs = render_with_monitoring(tmp_path)
    rule = of_kind(docs, "PrometheusRule")[0]
    rule["spec"]["groups"][0]["rules"][0]["fro"] = "1m"
    assert "fro" in "\n".join(checks.check_schemas([rule]))


Mutation = Callable[[list[Doc]], None]


def misspell_a_metric(docs: list[Doc]) -> None:
    rule = of_kind(docs, "PrometheusRule")[0]["spec"]["groups"][0]["rules"][0]
    rule["expr"] = rule["expr"].replace("memlog_log_is_leader", "memlog_log_is_leeder")


def name_another_job(docs: list[Doc]) -> None:
    rule = of_kind(docs, "PrometheusRule")[0]["spec"]["groups"][0]["rules"][0]
    rule["expr"] = rule["expr"].replace("memlog-log-metrics", "memlog-log")


def monitor_the_wrong_port(docs: list[Doc]) -> None:
    of_kind(docs, "ServiceMonitor")[0]["spec"]["endpoints"][0]["port"] = "grpc"


def drop_the_container_port(docs: list[Doc]) -> None:
    for w in workloads(docs):
        for c in containers(w):
            c["ports"] = [p for p in c.get("ports", []) if p.get("name") != "metrics"]


@pytest.mark.parametrize(
    ("check", "mutate", "expect"),
    [
        (check_metric_names, misspell_a_metric, "memlog_log_is_leeder"),
        (check_metric_names, name_another_job, "no ServiceMonitor scrapes"),
        (check_service_monitors, monitor_the_wrong_port, "no port named grpc"),
        (check_service_monitors, drop_the_container_port, "declares no port"),
    ],
)
def test_checks_catch(
    tmp_path: Path, check: Callable[[list[Doc]], list[str]], mutate: Mutation, expect: str
) -> None:
    docs = render_with_monitoring(tmp_path)
    assert check(docs) == []
    mutate(docs)
    assert expect in "\n".join(check(docs))
