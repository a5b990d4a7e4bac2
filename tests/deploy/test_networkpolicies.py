"""The NetworkPolicies of each overlay, evaluated (tests/deploy/netpol.py) over every pod the
workloads make, pods elsewhere (some wearing memlog's labels), a pod of no workload in the
namespace, the cluster DNS, Prometheus (and a pod elsewhere wearing its label) and an address
outside the cluster, on every declared port and a few undeclared ones. What must hold: from
outside the namespace only the shims' Redis port is reachable, and the shims' and log nodes'
metrics port from Prometheus alone; the log's peer port only from log pods; the log's client
port only from shims and the snapshotter; shims, the snapshotter and log nodes reach nothing
else but DNS. Each claim is also shown to catch a broken policy.

The log's Raft traffic has a port of its own named `peer`; `with_peer_port` adds one (7002)
only to a render that lacks it, so the claims are about the policies, whatever the ports.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.deploy import netpol
from tests.deploy.manifests import (
    OVERLAYS,
    Doc,
    containers,
    of_kind,
    one,
    pod_labels,
    render,
    sample_pods,
    workloads,
)
from tests.deploy.netpol import Endpoint, Network

NS = "memlog"
PEER_PORT = 7002
UNDECLARED_PORTS = (22, 80, 443, 2379, 6380, 8080, 9090, 10250)


def with_peer_port(docs: list[Doc]) -> list[Doc]:
    """The render, with a `peer` port on the log container if it has none yet."""
    log = one(docs, "StatefulSet", "memlog-log")
    container = log["spec"]["template"]["spec"]["containers"][0]
    ports = container.setdefault("ports", [])
    if not any(p.get("name") == "peer" for p in ports):
        ports.append({"name": "peer", "containerPort": PEER_PORT, "protocol": "TCP"})
    return docs


PROMETHEUS = {"app.kubernetes.io/name": "prometheus"}


def role(pod: Endpoint) -> str:
    if pod.namespace == "monitoring" and pod.labels == PROMETHEUS:
        return "prometheus"
    if pod.namespace != NS:
        return "outside"
    return pod.labels.get("app.kubernetes.io/component", "stranger")


def endpoints(docs: list[Doc]) -> list[Endpoint]:
    """Every pod of the workloads, and the others the claims speak of."""
    found: list[Endpoint] = []
    for w in workloads(docs):
        ports = netpol.container_ports(containers(w))
        for i, pod in enumerate(sample_pods(w)):
            found.append(Endpoint(pod.name, pod.namespace, pod.labels, ports, f"10.1.{i}.{i}"))
    shim_labels = pod_labels(one(docs, "Deployment", "memlog-shim"))
    log_labels = pod_labels(one(docs, "StatefulSet", "memlog-log"))
    found += [
        Endpoint(
            "coredns", "kube-system", {"k8s-app": "kube-dns"},
            (("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")),
        ),
        Endpoint("internet", None, ip="203.0.113.7"),
        Endpoint("prometheus", "monitoring", PROMETHEUS, (("web", 9090, "TCP"),)),
        # Prometheus's label in another namespace gains nothing.
        Endpoint("fake-prometheus", "default", PROMETHEUS),
        Endpoint("pod-elsewhere", "default", {"app": "web"}, (("http", 8080, "TCP"),)),
        # Another namespace's pods wearing memlog's labels gain nothing.
        Endpoint("fake-shim", "default", shim_labels),
        Endpoint("fake-log", "other", log_labels, (("peer", PEER_PORT, "TCP"),)),
        # A pod of no memlog workload in the namespace (kubectl run ...).
        Endpoint("stranger", NS, {"run": "debug"}, (("http", 8080, "TCP"),)),
    ]  # fmt: skip
    return found


def network(docs: list[Doc]) -> Network:
    labels = {
        ns["metadata"]["name"]: ns["metadata"].get("labels") or {}
        for ns in of_kind(docs, "Namespace")
    }
    return Network(docs, labels)


def ports_of(pod: Endpoint) -> list[tuple[int, str]]:
    return sorted(
        {(n, proto) for _, n, proto in pod.ports} | {(p, "TCP") for p in UNDECLARED_PORTS}
    )


def port_name(pod: Endpoint, port: int, protocol: str) -> str:
    for name, number, proto in pod.ports:
        if (number, proto) == (port, protocol):
            return name
    return str(port)


Path_ = tuple[str, str, str]  # (source role, destination role, destination port name)


def reachable(docs: list[Doc]) -> set[tuple[str, str, str, str]]:
    """(source, destination, port name, destination role) for every connection that gets
    through, over every pair of endpoints and every port of the destination."""
    net = network(docs)
    pods = endpoints(docs)
    found: set[tuple[str, str, str, str]] = set()
    for src in pods:
        for dst in pods:
            if dst.namespace is None:
                continue
            for port, protocol in ports_of(dst):
                if net.allowed(src, dst, port, protocol):
                    name = port_name(dst, port, protocol)
                    found.add((src.name, dst.name, f"{name}/{protocol}", role(dst)))
    return found


def roles_by_name(docs: list[Doc]) -> dict[str, str]:
    return {e.name: role(e) for e in endpoints(docs)}


# -- the claims: each returns its problems (empty: it holds) ------------------------------------


def claim_outside_reaches_only_the_shims_redis_port(docs: list[Doc]) -> list[str]:
    roles = roles_by_name(docs)
    return [
        f"{src} (outside the namespace) reaches {dst} port {port}"
        for src, dst, port, dst_role in sorted(reachable(docs))
        if roles[src] == "outside" and dst_role not in ("outside", "prometheus")
        and not (dst_role == "shim" and port == "redis/TCP")
    ]  # fmt: skip


def claim_every_shim_is_reachable_from_outside(docs: list[Doc]) -> list[str]:
    found = reachable(docs)
    shims = [n for n, r in roles_by_name(docs).items() if r == "shim"]
    return [
        f"{who} cannot reach {shim} port redis"
        for shim in shims
        # (A stranger inside the namespace is held by the default deny of its own egress.)
        for who in ("internet", "pod-elsewhere", "fake-log")
        if (who, shim, "redis/TCP", "shim") not in found
    ]


def _sources_of(docs: list[Doc], dst_role: str, port: str) -> dict[str, set[str]]:
    """destination pod -> the roles of the sources reaching its port."""
    roles = roles_by_name(docs)
    sources: dict[str, set[str]] = {n: set() for n, r in roles.items() if r == dst_role}
    for src, dst, got_port, got_role in reachable(docs):
        if got_role == dst_role and got_port == port:
            sources[dst].add(roles[src])
    return sources


def claim_peer_port_only_from_log_pods(docs: list[Doc]) -> list[str]:
    problems = []
    for pod, roles in _sources_of(docs, "log", "peer/TCP").items():
        if roles != {"log"}:
            problems.append(f"{pod} port peer is reached by {sorted(roles)}, expected log only")
    return problems


def claim_client_port_only_from_shims(docs: list[Doc]) -> list[str]:
    problems = []
    for pod, roles in _sources_of(docs, "log", "grpc/TCP").items():
        if roles != {"shim", "snapshotter"}:
            problems.append(
                f"{pod} port grpc is reached by {sorted(roles)}, expected shim and snapshotter"
            )
    return problems


def claim_egress_is_only_what_each_needs(docs: list[Doc]) -> list[str]:
    """Shims and the snapshotter reach the log's client port and DNS; log nodes each other's
    peer port and DNS;
    anything else in the namespace, DNS alone."""
    roles = roles_by_name(docs)
    allowed = {
        "shim": {("log", "grpc/TCP"), ("outside", "dns/UDP"), ("outside", "dns-tcp/TCP")},
        "log": {("log", "peer/TCP"), ("outside", "dns/UDP"), ("outside", "dns-tcp/TCP")},
        "snapshotter": {("log", "grpc/TCP"), ("outside", "dns/UDP"), ("outside", "dns-tcp/TCP")},
        "stranger": {("outside", "dns/UDP"), ("outside", "dns-tcp/TCP")},
    }
    problems: list[str] = []
    for src_role, wanted in allowed.items():
        got = {(r, p) for s, _, p, r in reachable(docs) if roles[s] == src_role}
        if got != wanted:
            problems.append(
                f"{src_role} pods reach {sorted(got - wanted)} beyond what they need, and miss "
                f"{sorted(wanted - got)}"
            )
    return problems


def claim_metrics_only_from_prometheus(docs: list[Doc]) -> list[str]:
    """Prometheus reaches the metrics port of every shim and log pod, and nothing else of
    the namespace (but the shims' Redis port, open to all); no one else reaches a metrics
    port."""
    roles = roles_by_name(docs)
    found = reachable(docs)
    problems = [
        f"prometheus reaches {dst} port {port}"
        for src, dst, port, dst_role in sorted(found)
        if src == "prometheus" and dst_role not in ("outside", "prometheus")
        and port != "metrics/TCP" and not (dst_role == "shim" and port == "redis/TCP")
    ]  # fmt: skip
    for pod, pod_role in roles.items():
        if (
            pod_role in ("shim", "log")
            and ("prometheus", pod, "metrics/TCP", pod_role) not in found
        ):
            problems.append(f"prometheus cannot reach {pod} port metrics")
    for src, dst, port, _ in sorted(found):
        if port == "metrics/TCP" and roles[src] != "prometheus" and roles[dst] != "outside":
            problems.append(f"{src} ({roles[src]}) reaches {dst} port metrics")
    return problems


CLAIMS: dict[str, Callable[[list[Doc]], list[str]]] = {
    "metrics": claim_metrics_only_from_prometheus,
    "outside": claim_outside_reaches_only_the_shims_redis_port,
    "shims-open": claim_every_shim_is_reachable_from_outside,
    "peer": claim_peer_port_only_from_log_pods,
    "client": claim_client_port_only_from_shims,
    "egress": claim_egress_is_only_what_each_needs,
}


def policy(docs: list[Doc], name: str) -> Doc:
    return one(docs, "NetworkPolicy", name)


@pytest.mark.parametrize("name", OVERLAYS)
@pytest.mark.parametrize("claim", list(CLAIMS))
def test_claim_holds(name: str, claim: str) -> None:
    assert CLAIMS[claim](with_peer_port(render(name))) == []


def test_the_evaluator_sees_a_real_mix() -> None:
    """The universe is not trivially empty: shims, log pods, DNS, outsiders all present."""
    docs = with_peer_port(render("kind"))
    roles = roles_by_name(docs)
    assert sorted(set(roles.values())) == [
        "log", "outside", "prometheus", "shim", "snapshotter", "stranger"
    ]  # fmt: skip
    found = reachable(docs)
    assert ("internet", "memlog-log-0", "grpc/TCP", "log") not in found
    assert ("memlog-log-0", "memlog-log-1", "peer/TCP", "log") in found
    assert ("memlog-log-0", "memlog-log-1", "grpc/TCP", "log") not in found


def test_every_policy_is_read_in_full() -> None:
    """A field the evaluator does not know is refused, never skipped."""
    docs = render("kind")
    policy(docs, "memlog-log")["spec"]["ingress"][0]["from"][0]["podSelectorr"] = {}
    with pytest.raises(netpol.Unsupported, match="podSelectorr"):
        network(docs)


def test_named_ports_of_the_policies_are_declared() -> None:
    docs = with_peer_port(render("production"))
    declared = {p[0] for w in workloads(docs) for p in netpol.container_ports(containers(w))}
    named = {
        port["port"]
        for p in of_kind(docs, "NetworkPolicy")
        for direction in ("ingress", "egress")
        for rule in p["spec"].get(direction) or []
        for port in rule.get("ports") or []
        if isinstance(port.get("port"), str)
    }
    assert named == {"redis", "grpc", "peer", "metrics"}
    assert named <= declared


# -- each claim catches a broken policy --------------------------------------------------------


def drop(docs: list[Doc], *names: str) -> None:
    for name in names:
        docs.remove(policy(docs, name))


def open_client_port(docs: list[Doc]) -> None:
    del policy(docs, "memlog-log")["spec"]["ingress"][0]["from"]


def peers_from_any_namespace(docs: list[Doc]) -> None:
    peer = policy(docs, "memlog-log")["spec"]["ingress"][1]["from"][0]
    peer["namespaceSelector"] = {}


def shims_reach_everything(docs: list[Doc]) -> None:
    policy(docs, "memlog-shim")["spec"]["egress"] = [{}]


def shim_port_by_number_of_the_wrong_port(docs: list[Doc]) -> None:
    policy(docs, "memlog-shim")["spec"]["ingress"][0]["ports"][0]["port"] = 6380


def metrics_from_any_namespace(docs: list[Doc]) -> None:
    policy(docs, "memlog-metrics")["spec"]["ingress"][0]["from"][0]["namespaceSelector"] = {}


def metrics_on_every_port(docs: list[Doc]) -> None:
    del policy(docs, "memlog-metrics")["spec"]["ingress"][0]["ports"]


BROKEN: list[tuple[str, Callable[[list[Doc]], None], str]] = [
    ("metrics", lambda d: drop(d, "memlog-metrics"), "cannot reach"),
    ("metrics", metrics_from_any_namespace, "fake-prometheus"),
    ("metrics", metrics_on_every_port, "prometheus reaches"),
    ("outside", lambda d: drop(d, "memlog-default-deny"), "stranger port"),
    ("outside", open_client_port, "port grpc"),
    ("shims-open", shim_port_by_number_of_the_wrong_port, "cannot reach"),
    ("peer", peers_from_any_namespace, "outside"),
    ("peer", lambda d: drop(d, "memlog-log"), "reached by []"),
    ("peer", lambda d: drop(d, "memlog-log", "memlog-metrics", "memlog-default-deny"), "outside"),
    ("client", open_client_port, "outside"),
    ("egress", shims_reach_everything, "beyond what they need"),
    ("egress", lambda d: drop(d, "memlog-dns"), "miss"),
]


@pytest.mark.parametrize(("claim", "breaks", "expect"), BROKEN)
def test_claim_catches(claim: str, breaks: Callable[[list[Doc]], None], expect: str) -> None:
    docs = with_peer_port(render("kind"))
    assert CLAIMS[claim](docs) == []
    breaks(docs)
    problems = CLAIMS[claim](docs)
    assert problems and expect in "\n".join(problems), problems
