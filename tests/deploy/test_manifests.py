"""deploy/: every kustomization renders, validates against the Kubernetes schemas, and holds
together (selectors, ports, the headless Service, spread, PDBs, security). Each check is
also fed a deliberately broken render, to show that it can fail."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml

from tests.deploy import checks
from tests.deploy.manifests import (
    DEPLOY,
    KUSTOMIZATIONS,
    OVERLAYS,
    ZONE_KEY,
    Doc,
    kustomize_version,
    namespace,
    of_kind,
    one,
    render,
    workloads,
)

Mutation = Callable[[list[Doc]], None]


def log(docs: list[Doc]) -> Doc:
    return one(docs, "StatefulSet", "memlog-log")


def shim(docs: list[Doc]) -> Doc:
    return one(docs, "Deployment", "memlog-shim")


def container(workload: Doc) -> Doc:
    found: Doc = workload["spec"]["template"]["spec"]["containers"][0]
    return found


def caught(check: Callable[[list[Doc]], list[str]], mutate: Mutation, name: str = "kind") -> str:
    """The problems `check` finds once `mutate` has broken a clean render (must be some)."""
    docs = render(name)
    assert check(docs) == [], "the clean render must pass first"
    mutate(docs)
    problems = check(docs)
    assert problems, "the broken render was not caught"
    return "\n".join(problems)


# -- the clean renders ------------------------------------------------------------------


def test_kustomize_is_the_pinned_one() -> None:
    assert "Kustomize Version: v5" in kustomize_version()


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_renders_what_memlog_needs(name: str) -> None:
    docs = render(name)
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    for needed in (
        "StatefulSet/memlog-log",
        "Service/memlog-log-peers",
        "Service/memlog-log",
        "PodDisruptionBudget/memlog-log",
        "Deployment/memlog-shim",
        "Service/memlog",
        "PodDisruptionBudget/memlog-shim",
        "Deployment/memlog-snapshotter",
    ):
        assert needed in kinds, kinds
    # The production overlay adds the log's client rights (components/log-tls).
    assert len(of_kind(docs, "ConfigMap")) == (3 if name == "production" else 2)
    if name in OVERLAYS:
        assert "StorageClass/memlog-log" in kinds and "Namespace/memlog" in kinds
        assert {namespace(d) for d in docs if d["kind"] not in ("Namespace", "StorageClass")} == {
            "memlog"
        }


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
@pytest.mark.parametrize("check", [c for c in checks.ALL_CHECKS if c not in ("cli", "peers")])
def test_check_holds(name: str, check: str) -> None:
    assert checks.ALL_CHECKS[check](render(name)) == []


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlays_render_their_wait_for_first_consumer_storage_class(name: str) -> None:
    assert checks.check_storage_classes(render(name), required=True) == []


def test_base_leaves_the_storage_class_to_the_overlays() -> None:
    docs = render("base")
    assert of_kind(docs, "StorageClass") == []
    assert checks.check_storage_classes(docs, required=False) == []
    assert "memlog-log" in checks.check_storage_classes(docs, required=True)[0]


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_namespaces_enforce_the_restricted_pod_security_standard(name: str) -> None:
    ns = one(render(name), "Namespace", "memlog")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_overlays_differ_where_they_should() -> None:
    def storage(docs: list[Doc]) -> str:
        return str(log(docs)["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"])

    kind, production = render("kind"), render("production")
    assert "1Gi" in storage(kind) and "100Gi" in storage(production)
    assert one(kind, "StorageClass", "memlog-log")["provisioner"] == "rancher.io/local-path"
    assert one(production, "StorageClass", "memlog-log")["reclaimPolicy"] == "Retain"
    assert container(log(kind))["image"] == "memlog:dev"
    assert container(log(production))["image"].startswith("registry.example.com/memlog:")
    assert shim(production)["spec"]["replicas"] >= 2 * shim(kind)["spec"]["replicas"]


def test_kind_cluster_has_a_worker_in_each_of_three_zones() -> None:
    config = yaml.safe_load((DEPLOY / "overlays" / "kind" / "kind-cluster.yaml").read_text())
    zones = [n["labels"][ZONE_KEY] for n in config["nodes"] if n["role"] == "worker"]
    spread = checks.zone_constraints(log(render("kind")))[0]
    assert len(set(zones)) == len(zones) >= spread["minDomains"]


def test_configuration_comes_from_config_maps() -> None:
    docs = render("production")
    for workload in (log(docs), shim(docs)):
        refs = [s["configMapRef"]["name"] for s in container(workload)["envFrom"]]
        assert len(refs) == 1 and one(docs, "ConfigMap", refs[0])["data"]


# -- the broken renders --------------------------------------------------------------------


def test_schemas_catch_a_misspelt_field() -> None:
    def mutate(docs: list[Doc]) -> None:
        spec = one(docs, "Service", "memlog-log-peers")["spec"]
        spec["publishNotReadyAdresses"] = spec.pop("publishNotReadyAddresses")

    assert "publishNotReadyAdresses" in caught(checks.check_schemas, mutate)


def test_schemas_catch_a_wrong_type() -> None:
    def mutate(docs: list[Doc]) -> None:
        log(docs)["spec"]["replicas"] = "three"

    assert "replicas" in caught(checks.check_schemas, mutate)


def test_selectors_catch_a_workload_selector_off_its_template() -> None:
    def mutate(docs: list[Doc]) -> None:
        shim(docs)["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] = "x"

    assert "spec.selector" in caught(checks.check_selectors, mutate)


def test_selectors_catch_a_spread_constraint_that_selects_other_pods() -> None:
    # The ZooKeeper tutorial's mistake: a selector that matches no pod of its own.
    def mutate(docs: list[Doc]) -> None:
        tsc = checks.zone_constraints(log(docs))[0]
        tsc["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] = "zk"

    assert "spreads nothing" in caught(checks.check_selectors, mutate)


def test_selectors_catch_a_service_that_selects_both_programs() -> None:
    def mutate(docs: list[Doc]) -> None:
        del one(docs, "Service", "memlog")["spec"]["selector"]["app.kubernetes.io/component"]

    # The shims, the log nodes and the snapshotter.
    assert "3 workloads" in caught(checks.check_selectors, mutate)


def test_selectors_catch_a_pdb_that_selects_nothing() -> None:
    def mutate(docs: list[Doc]) -> None:
        pdb = one(docs, "PodDisruptionBudget", "memlog-log")
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] = "logs"

    assert "0 workloads" in caught(checks.check_selectors, mutate)


def test_selectors_catch_an_anti_affinity_that_matches_nothing() -> None:
    def mutate(docs: list[Doc]) -> None:
        log(docs)["spec"]["template"]["spec"]["affinity"] = {
            "podAntiAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "zk"}}, "topologyKey": ZONE_KEY}
                ]
            }
        }

    assert "podAntiAffinity" in caught(checks.check_selectors, mutate)


def test_ports_catch_a_probe_on_an_undeclared_port() -> None:
    def mutate(docs: list[Doc]) -> None:
        container(shim(docs))["readinessProbe"]["httpGet"]["port"] = "resp"

    assert "'resp'" in caught(checks.check_ports, mutate)


def test_ports_catch_a_grpc_probe_on_another_number() -> None:
    def mutate(docs: list[Doc]) -> None:
        container(log(docs))["readinessProbe"]["grpc"]["port"] = 7009

    assert "7009" in caught(checks.check_ports, mutate)


def test_ports_catch_a_service_target_port_the_pods_lack() -> None:
    def mutate(docs: list[Doc]) -> None:
        one(docs, "Service", "memlog")["spec"]["ports"][0]["targetPort"] = 6380

    assert "6380" in caught(checks.check_ports, mutate)


def test_headless_catches_a_service_name_mismatch() -> None:
    def mutate(docs: list[Doc]) -> None:
        log(docs)["spec"]["serviceName"] = "memlog-log-headless"

    assert "names no rendered Service" in caught(checks.check_headless_services, mutate)


def test_headless_catches_a_cluster_ip_and_hidden_unready_peers() -> None:
    def mutate(docs: list[Doc]) -> None:
        spec = one(docs, "Service", "memlog-log-peers")["spec"]
        del spec["clusterIP"]
        spec["publishNotReadyAddresses"] = False

    found = caught(checks.check_headless_services, mutate)
    assert "headless" in found and "publishNotReadyAddresses" in found


@pytest.mark.parametrize(
    ("field", "value", "expect"),
    [
        ("minDomains", 2, "minDomains"),
        ("whenUnsatisfiable", "ScheduleAnyway", "DoNotSchedule"),
        ("maxSkew", 2, "maxSkew"),
    ],
)
def test_log_catches_a_weaker_zone_spread(field: str, value: object, expect: str) -> None:
    def mutate(docs: list[Doc]) -> None:
        checks.zone_constraints(log(docs))[0][field] = value

    assert expect in caught(checks.check_log, mutate)


def test_log_catches_a_missing_zone_spread() -> None:
    def mutate(docs: list[Doc]) -> None:
        del log(docs)["spec"]["template"]["spec"]["topologySpreadConstraints"]

    assert ZONE_KEY in caught(checks.check_log, mutate)


def test_log_catches_ordered_pod_management() -> None:
    def mutate(docs: list[Doc]) -> None:
        log(docs)["spec"]["podManagementPolicy"] = "OrderedReady"

    assert "Parallel" in caught(checks.check_log, mutate)


def test_log_catches_a_pdb_of_two() -> None:
    def mutate(docs: list[Doc]) -> None:
        one(docs, "PodDisruptionBudget", "memlog-log")["spec"]["maxUnavailable"] = 2

    assert "maxUnavailable: 1" in caught(checks.check_log, mutate)


def test_log_catches_a_missing_pdb() -> None:
    def mutate(docs: list[Doc]) -> None:
        docs.remove(one(docs, "PodDisruptionBudget", "memlog-log"))

    assert "0 PodDisruptionBudgets" in caught(checks.check_log, mutate)


def test_log_catches_an_even_voter_count_and_a_short_grace() -> None:
    def mutate(docs: list[Doc]) -> None:
        log(docs)["spec"]["replicas"] = 4
        log(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1

    found = caught(checks.check_log, mutate)
    assert "odd number" in found and "terminationGracePeriodSeconds" in found


def test_log_catches_a_tcp_readiness_probe_and_missing_limits() -> None:
    def mutate(docs: list[Doc]) -> None:
        c = container(log(docs))
        c["readinessProbe"] = {"tcpSocket": {"port": "grpc"}}
        del c["resources"]["limits"]

    found = caught(checks.check_log, mutate)
    assert "gRPC health" in found and "limits.memory" in found


def test_storage_catches_an_immediate_binding_class() -> None:
    def mutate(docs: list[Doc]) -> None:
        one(docs, "StorageClass", "memlog-log")["volumeBindingMode"] = "Immediate"

    assert "WaitForFirstConsumer" in caught(
        lambda docs: checks.check_storage_classes(docs, required=True), mutate
    )


def test_shims_catch_a_missing_zone_spread_and_pdb() -> None:
    def mutate(docs: list[Doc]) -> None:
        spec = shim(docs)["spec"]["template"]["spec"]
        spec["topologySpreadConstraints"] = [
            t for t in spec["topologySpreadConstraints"] if t["topologyKey"] != ZONE_KEY
        ]
        docs.remove(one(docs, "PodDisruptionBudget", "memlog-shim"))

    found = caught(checks.check_shims, mutate)
    assert ZONE_KEY in found and "PodDisruptionBudget" in found


def test_shims_catch_a_missing_readiness_probe_and_service() -> None:
    def mutate(docs: list[Doc]) -> None:
        del container(shim(docs))["readinessProbe"]
        one(docs, "Service", "memlog")["spec"]["ports"][0]["port"] = 6380

    found = caught(checks.check_shims, mutate)
    assert "readiness probe" in found and "6379" in found


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("readOnlyRootFilesystem", False),
        ("allowPrivilegeEscalation", True),
        ("privileged", True),
        ("capabilities", {"add": ["NET_ADMIN"]}),
        ("runAsUser", 0),
    ],
)
def test_security_catches_a_weaker_container(field: str, value: object) -> None:
    def mutate(docs: list[Doc]) -> None:
        container(shim(docs))["securityContext"][field] = value

    assert caught(checks.check_security, mutate)


def test_security_catches_a_root_pod() -> None:
    def mutate(docs: list[Doc]) -> None:
        sc = log(docs)["spec"]["template"]["spec"]["securityContext"]
        sc["runAsNonRoot"] = False
        del sc["runAsUser"]
        del sc["seccompProfile"]

    found = caught(checks.check_security, mutate)
    assert "runAsNonRoot" in found and "runAsUser" in found and "seccomp" in found


def test_image_catches_two_images_and_an_untagged_one() -> None:
    def two(docs: list[Doc]) -> None:
        container(shim(docs))["image"] = "memlog-shim:dev"

    def untagged(docs: list[Doc]) -> None:
        for w in workloads(docs):
            container(w)["image"] = "memlog"

    assert "one image" in caught(checks.check_single_image, two)
    assert "no tag" in caught(checks.check_single_image, untagged)


def test_production_gives_the_log_and_the_shims_their_certificates() -> None:
    docs = render("production")
    certs = {c["metadata"]["name"]: c for c in of_kind(docs, "Certificate")}
    assert {"memlog-ca", "memlog-log-tls", "memlog-shim-tls"} <= set(certs)
    log_names = certs["memlog-log-tls"]["spec"]["dnsNames"]
    # Each node id (the peer check on the peer port) and the peers' DNS names.
    assert {"memlog-log-0", "memlog-log-1", "memlog-log-2"} <= set(log_names)
    assert "*.memlog-log-peers.memlog.svc.cluster.local" in log_names
    env = {e["name"]: e.get("value") for e in container(log(docs)).get("env") or []}
    assert env["LOGSVC_INSECURE"] == "false" and env["LOGSVC_CLIENT_CERTS"]
    ports = {p["name"]: p["containerPort"] for p in container(log(docs))["ports"]}
    assert ports["grpc"] == 7001 and ports["peer"] == 7002
    shim_env = {e["name"] for e in container(shim(docs)).get("env") or []}
    assert {"CACHESHIM_LOG_TLS_CA", "CACHESHIM_LOG_TLS_CERT", "CACHESHIM_LOG_TLS_KEY"} <= shim_env


def test_certificates_catch_a_secret_no_certificate_writes() -> None:
    def mutate(docs: list[Doc]) -> None:
        volumes = log(docs)["spec"]["template"]["spec"]["volumes"]
        next(v for v in volumes if "secret" in v)["secret"]["secretName"] = "memlog-typo"

    assert "memlog-typo" in caught(checks.check_certificates, mutate, "production")


def test_shims_catch_a_tcp_readiness_probe() -> None:
    """A TCP probe on 6379 passes for a wedged event loop: the shim's probes are /readyz and
    /livez on its --metrics-port (issue 22)."""

    def mutate(docs: list[Doc]) -> None:
        container(shim(docs))["readinessProbe"] = {"tcpSocket": {"port": "redis"}}

    assert "readiness probe must ask /readyz" in caught(checks.check_shims, mutate)
