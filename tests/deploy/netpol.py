"""An evaluator of Kubernetes NetworkPolicies (networking.k8s.io/v1) for the subset deploy/
uses, to prove from the rendered manifests who can reach which port.

The semantics are the API's (https://kubernetes.io/docs/concepts/services-networking/
network-policies/): a pod selected by any policy with Ingress (Egress) in its policyTypes is
isolated for ingress (egress), and then only what some selecting policy's rules allow gets
in (out); policies add up, never subtract. A connection from A to B's port needs A's egress
and B's ingress to allow it. A peer's `podSelector` alone means pods of the policy's own
namespace; `namespaceSelector` alone, every pod of the namespaces it selects; both, the
selected pods of the selected namespaces; an absent or empty `from`/`to`, everyone; `ipBlock`
matches addresses outside the cluster (what it does to pod addresses is up to the network
plugin, so it is taken to match none). Ports: absent means all; a named port is looked up
in the destination pod's container ports; protocol defaults to TCP; `endPort` makes a range.

Anything else in a policy (a field this evaluator does not know) raises Unsupported, so a
policy is never silently misread.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.deploy.manifests import Doc, label_selector_matches, namespace, of_kind

SPEC_KEYS = {"podSelector", "policyTypes", "ingress", "egress"}
RULE_KEYS = {"ingress": {"from", "ports"}, "egress": {"to", "ports"}}
PEER_KEYS = {"podSelector", "namespaceSelector", "ipBlock"}
PORT_KEYS = {"protocol", "port", "endPort"}
SELECTOR_KEYS = {"matchLabels", "matchExpressions"}


class Unsupported(ValueError):
    pass


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace and labels, its containers' ports) or, with namespace None, an
    address outside the cluster."""

    name: str
    namespace: str | None
    labels: dict[str, str] = field(default_factory=dict)
    ports: tuple[tuple[str, int, str], ...] = ()  # (name, containerPort, protocol)
    ip: str = "10.1.0.1"

    def named_port(self, name: str, protocol: str) -> int | None:
        for port_name, number, port_protocol in self.ports:
            if port_name == name and port_protocol == protocol:
                return number
        return None


def container_ports(containers: Iterable[Doc]) -> tuple[tuple[str, int, str], ...]:
    return tuple(
        (str(p.get("name", "")), int(p["containerPort"]), str(p.get("protocol", "TCP")))
        for c in containers
        for p in c.get("ports") or []
    )


def _check_keys(what: str, found: Doc, allowed: set[str]) -> None:
    unknown = set(found) - allowed
    if unknown:
        raise Unsupported(f"{what}: {sorted(unknown)} is beyond what this evaluator reads")


@dataclass(frozen=True)
class Policy:
    name: str
    namespace: str
    pod_selector: Doc
    types: frozenset[str]
    ingress: tuple[Doc, ...]
    egress: tuple[Doc, ...]

    @classmethod
    def from_doc(cls, doc: Doc) -> Policy:
        name = doc["metadata"]["name"]
        spec = doc.get("spec") or {}
        _check_keys(f"NetworkPolicy/{name} spec", spec, SPEC_KEYS)
        types = spec.get("policyTypes") or ["Ingress", *(["Egress"] if "egress" in spec else [])]
        for direction in ("ingress", "egress"):
            for rule in spec.get(direction) or []:
                _check_keys(f"NetworkPolicy/{name} {direction} rule", rule, RULE_KEYS[direction])
                for peer in rule.get("from" if direction == "ingress" else "to") or []:
                    _check_keys(f"NetworkPolicy/{name} peer", peer, PEER_KEYS)
                    for key in ("podSelector", "namespaceSelector"):
                        if key in peer:
                            _check_keys(f"NetworkPolicy/{name} {key}", peer[key], SELECTOR_KEYS)
                for port in rule.get("ports") or []:
                    _check_keys(f"NetworkPolicy/{name} port", port, PORT_KEYS)
        _check_keys(f"NetworkPolicy/{name} podSelector", spec["podSelector"], SELECTOR_KEYS)
        return cls(
            name=name,
            namespace=namespace(doc),
            pod_selector=spec["podSelector"],
            types=frozenset(types),
            ingress=tuple(spec.get("ingress") or ()),
            egress=tuple(spec.get("egress") or ()),
        )

    def selects(self, pod: Endpoint) -> bool:
        return pod.namespace == self.namespace and label_selector_matches(
            self.pod_selector, pod.labels
        )


class Network:
    """The policies of a render, and the labels of the namespaces endpoints live in."""

    def __init__(self, docs: list[Doc], namespace_labels: dict[str, dict[str, str]]) -> None:
        self.policies = [Policy.from_doc(d) for d in of_kind(docs, "NetworkPolicy")]
        self.namespace_labels = namespace_labels

    def _namespace_matches(self, selector: Doc, name: str) -> bool:
        # Every namespace carries its own name as a label (kubernetes.io/metadata.name).
        labels = {**self.namespace_labels.get(name, {}), "kubernetes.io/metadata.name": name}
        return label_selector_matches(selector, labels)

    def _peer_matches(self, peer: Doc, policy: Policy, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            if other.namespace is not None:
                return False
            block = peer["ipBlock"]
            address = ipaddress.ip_address(other.ip)
            return address in ipaddress.ip_network(block["cidr"]) and not any(
                address in ipaddress.ip_network(e) for e in block.get("except") or []
            )
        if other.namespace is None:
            return False  # pod and namespace selectors select pods only
        if "namespaceSelector" in peer:
            if not self._namespace_matches(peer["namespaceSelector"], other.namespace):
                return False
        elif other.namespace != policy.namespace:
            return False
        return label_selector_matches(peer.get("podSelector") or {}, other.labels)

    @staticmethod
    def _port_matches(rule: Doc, destination: Endpoint, port: int, protocol: str) -> bool:
        entries = rule.get("ports") or []
        if not entries:
            return True
        for entry in entries:
            if entry.get("protocol", "TCP") != protocol:
                continue
            wanted = entry.get("port")
            if wanted is None:
                return True
            if isinstance(wanted, str):
                number = destination.named_port(wanted, protocol)
                if number is not None and number == port:
                    return True
                continue
            if int(wanted) <= port <= int(entry.get("endPort", wanted)):
                return True
        return False

    def _allowed(self, direction: str, subject: Endpoint, other: Endpoint, dst: Endpoint,
                 port: int, protocol: str) -> bool:  # fmt: skip
        """Whether `subject`'s policies let it talk with `other` (direction "Ingress": other
        connects to subject; "Egress": subject connects to other) on dst's port."""
        if subject.namespace is None:
            return True  # outside the cluster: no NetworkPolicy applies
        selecting = [p for p in self.policies if direction in p.types and p.selects(subject)]
        if not selecting:
            return True  # not isolated in this direction
        peers_key = "from" if direction == "Ingress" else "to"
        for policy in selecting:
            rules = policy.ingress if direction == "Ingress" else policy.egress
            for rule in rules:
                peers = rule.get(peers_key) or []
                if peers and not any(self._peer_matches(p, policy, other) for p in peers):
                    continue
                if self._port_matches(rule, dst, port, protocol):
                    return True
        return False

    def allowed(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        """Whether a connection from src to dst's port gets through every policy."""
        return self._allowed("Egress", src, dst, dst, port, protocol) and self._allowed(
            "Ingress", dst, src, dst, port, protocol
        )
