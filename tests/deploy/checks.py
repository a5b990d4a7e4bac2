"""Checks of rendered manifests. Each returns a list of problems (empty: it holds), so that a
test can assert a clean render passes and that a deliberately broken one is caught.

Over 500 lines: one small check per property of the rendered manifests, kept together so the
list of what a render must hold is in one place.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]

from cacheshim import cli as cacheshim_cli
from cacheshim import launcher as memlog_cli
from logsvc import cli as logsvc_cli
from logsvc.config import ConfigError, parse_peer_addresses, parse_peers
from tests.deploy import crds
from tests.deploy.manifests import (
    CLUSTER_DOMAIN,
    ZONE_KEY,
    Doc,
    Pod,
    containers,
    label_selector_matches,
    namespace,
    of_kind,
    pod_labels,
    pod_spec,
    port_of,
    probes,
    ref,
    sample_pods,
    service_selects,
    workloads,
)
from tests.deploy.podenv import EnvError, command_line, container_env, expand, references

# The oldest Kubernetes the manifests are for (pods get their node's zone label from 1.35
# on) and the newest the validator knows.
K8S_VERSIONS = ("1.35.0", str(kubernetes_validate.latest_version()))
# logsvc's shutdown: leadership hand-off (<= 2 s), gRPC grace (1 s), RocksDB close.
LOG_GRACE_S_MIN = 10

Problems = list[str]


# -- schemas ---------------------------------------------------------------------------


def check_schemas(docs: list[Doc], versions: Sequence[str] = K8S_VERSIONS) -> Problems:
    """Every document is valid against the Kubernetes OpenAPI schemas, strictly (an unknown
    or misspelt field is an error), for each version."""
    problems: Problems = []
    for doc in docs:
        if crds.is_custom(doc):  # cert-manager's kinds: our own schemas (tests/deploy/crds.py)
            problems += [f"{ref(doc)} ({doc['apiVersion']}) at {p}" for p in crds.problems(doc)]
    for version in versions:
        for doc in docs:
            if crds.is_custom(doc):
                continue
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = "/".join(str(p) for p in exc.absolute_path)
                problems.append(f"{ref(doc)} (Kubernetes {version}) at /{path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError as exc:
                problems.append(f"{ref(doc)} (Kubernetes {version}): no schema: {exc}")
    return problems


# -- certificates (cert-manager) ----------------------------------------------------------

CERT_MANAGER_GROUP = "cert-manager.io"


# Secrets no manifest writes: the operator creates them (deploy/README.md, docs/security.md).
OPERATOR_SECRETS: frozenset[str] = frozenset({"memlog-auth"})


def check_certificates(docs: list[Doc]) -> Problems:
    """Every Secret a workload mounts is one a Certificate writes or one the operator makes
    by hand (OPERATOR_SECRETS: the ACL file), and every Certificate's issuer is rendered too,
    of a kind that exists; cert-manager's kinds have no schema here, so their required fields
    are read."""
    problems: Problems = []
    certs = of_kind(docs, "Certificate")
    issuers = {(d["metadata"]["name"], d["kind"]) for d in docs if d["kind"] == "Issuer"}
    made = {c["spec"].get("secretName") for c in certs}
    for cert in certs:
        spec = cert.get("spec") or {}
        if cert["apiVersion"] != f"{CERT_MANAGER_GROUP}/v1":
            problems.append(
                f"{ref(cert)}: apiVersion {cert['apiVersion']} is not cert-manager's v1"
            )
        if not spec.get("secretName"):
            problems.append(f"{ref(cert)}: no secretName")
        issuer = spec.get("issuerRef") or {}
        if (issuer.get("name"), issuer.get("kind", "Issuer")) not in issuers:
            problems.append(f"{ref(cert)}: issuer {issuer.get('name')!r} is not rendered")
    for w in workloads(docs):
        for volume in w["spec"]["template"]["spec"].get("volumes") or []:
            secret = (volume.get("secret") or {}).get("secretName")
            if secret is not None and secret not in made | OPERATOR_SECRETS:
                problems.append(f"{ref(w)} mounts Secret {secret!r}, which no Certificate writes")
    return problems


# -- selectors and labels --------------------------------------------------------------


def selected_by(docs: list[Doc], selector: Doc) -> list[Doc]:
    """The workloads whose pods a label selector (PDB, affinity) matches."""
    return [w for w in workloads(docs) if label_selector_matches(selector, pod_labels(w))]


def selected_by_service(docs: list[Doc], svc: Doc) -> list[Doc]:
    return [w for w in workloads(docs) if service_selects(svc, pod_labels(w))]


def check_selectors(docs: list[Doc]) -> Problems:
    problems: Problems = []
    for w in workloads(docs):
        selector = w["spec"].get("selector") or {}
        if not label_selector_matches(selector, pod_labels(w)) or not selector:
            problems.append(f"{ref(w)}: spec.selector does not match its pod template's labels")
        spec = pod_spec(w)
        for tsc in spec.get("topologySpreadConstraints") or []:
            if not label_selector_matches(tsc.get("labelSelector") or {}, pod_labels(w)):
                problems.append(
                    f"{ref(w)}: the spread constraint on {tsc.get('topologyKey')} selects "
                    "other pods than its own, so it spreads nothing"
                )
        affinity = spec.get("affinity") or {}
        for kind in ("podAffinity", "podAntiAffinity"):
            terms = affinity.get(kind) or {}
            for term in [
                *(terms.get("requiredDuringSchedulingIgnoredDuringExecution") or []),
                *(
                    t["podAffinityTerm"]
                    for t in terms.get("preferredDuringSchedulingIgnoredDuringExecution") or []
                ),
            ]:
                selector = term.get("labelSelector") or {}
                if not selected_by(docs, selector):
                    problems.append(f"{ref(w)}: a {kind} term selects no pod of these manifests")
    for svc in of_kind(docs, "Service"):
        if not (svc["spec"].get("selector") or {}):
            continue
        chosen = selected_by_service(docs, svc)
        if len(chosen) != 1:
            problems.append(
                f"{ref(svc)}: its selector matches the pods of {len(chosen)} workloads "
                f"({', '.join(ref(w) for w in chosen) or 'none'}), expected exactly 1"
            )
    for pdb in of_kind(docs, "PodDisruptionBudget"):
        selector = pdb["spec"].get("selector") or {}
        chosen = selected_by(docs, selector)
        if not selector or len(chosen) != 1:
            problems.append(
                f"{ref(pdb)}: its selector matches the pods of {len(chosen)} workloads, "
                "expected exactly 1"
            )
    return problems


# -- ports -----------------------------------------------------------------------------


def probe_port(probe: Doc) -> int | str | None:
    for handler in ("httpGet", "tcpSocket", "grpc"):
        if handler in probe:
            port: int | str = probe[handler]["port"]
            return port
    return None


def check_ports(docs: list[Doc]) -> Problems:
    """Every port a probe or a Service names is a port the container declares."""
    problems: Problems = []
    for w in workloads(docs):
        for c in containers(w):
            names = [p.get("name") for p in c.get("ports") or [] if p.get("name")]
            if len(names) != len(set(names)):
                problems.append(f"{ref(w)} container {c['name']}: port names repeat")
            for kind, probe in probes(c):
                port = probe_port(probe)
                if port is not None and port_of(c, port) is None:
                    problems.append(
                        f"{ref(w)} container {c['name']}: {kind} uses port {port!r}, which the "
                        "container does not declare"
                    )
    for svc in of_kind(docs, "Service"):
        if not (svc["spec"].get("selector") or {}):
            continue
        for w in selected_by_service(docs, svc):
            for sp in svc["spec"].get("ports") or []:
                target = sp.get("targetPort", sp["port"])
                if not any(port_of(c, target) for c in containers(w)):
                    problems.append(
                        f"{ref(svc)} port {sp.get('name', sp['port'])}: targetPort {target!r} "
                        f"is not a port {ref(w)}'s containers declare"
                    )
    return problems


# -- the headless Service of the log -----------------------------------------------------


def service_named(docs: list[Doc], name: str, ns: str) -> Doc | None:
    for svc in of_kind(docs, "Service"):
        if svc["metadata"]["name"] == name and namespace(svc) == ns:
            return svc
    return None


def check_headless_services(docs: list[Doc]) -> Problems:
    problems: Problems = []
    for sts in of_kind(docs, "StatefulSet"):
        name = sts["spec"].get("serviceName")
        svc = service_named(docs, str(name), namespace(sts)) if name else None
        if svc is None:
            problems.append(f"{ref(sts)}: serviceName {name!r} names no rendered Service")
            continue
        spec = svc["spec"]
        if spec.get("clusterIP") != "None":
            problems.append(f"{ref(svc)}: the peers' Service must be headless (clusterIP: None)")
        if spec.get("publishNotReadyAddresses") is not True:
            problems.append(
                f"{ref(svc)}: publishNotReadyAddresses must be true (peers resolve each other "
                "before any is ready)"
            )
        if not service_selects(svc, pod_labels(sts)):
            problems.append(f"{ref(svc)}: does not select {ref(sts)}'s pods")
    return problems


# -- the programs: which workload runs what --------------------------------------------


def runs(w: Doc, program: str) -> Doc | None:
    for c in pod_spec(w).get("containers") or []:
        if (c.get("command") or [None])[0] == program:
            container: Doc = c
            return container
    return None


def log_statefulsets(docs: list[Doc]) -> list[Doc]:
    return [w for w in of_kind(docs, "StatefulSet") if runs(w, "logsvc")]


def shim_workloads(docs: list[Doc]) -> list[Doc]:
    return [w for w in workloads(docs) if runs(w, "cacheshim")]


def pdbs_for(docs: list[Doc], w: Doc) -> list[Doc]:
    return [
        pdb
        for pdb in of_kind(docs, "PodDisruptionBudget")
        if label_selector_matches(pdb["spec"].get("selector") or {}, pod_labels(w))
        and namespace(pdb) == namespace(w)
    ]


def zone_constraints(w: Doc) -> list[Doc]:
    return [
        tsc
        for tsc in pod_spec(w).get("topologySpreadConstraints") or []
        if tsc.get("topologyKey") == ZONE_KEY
    ]


def check_pdb(docs: list[Doc], w: Doc) -> Problems:
    found = pdbs_for(docs, w)
    if len(found) != 1:
        return [f"{ref(w)}: {len(found)} PodDisruptionBudgets cover its pods, expected 1"]
    pdb = found[0]
    if pdb["spec"].get("maxUnavailable") != 1 or "minAvailable" in pdb["spec"]:
        return [f"{ref(pdb)}: expected maxUnavailable: 1 (and no minAvailable)"]
    return []


def check_resources(w: Doc) -> Problems:
    problems: Problems = []
    for c in containers(w):
        resources = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                if resource not in (resources.get(kind) or {}):
                    problems.append(f"{ref(w)} container {c['name']}: no {kind}.{resource}")
    return problems


def check_log(docs: list[Doc]) -> Problems:
    """The log: a StatefulSet of an odd number of voters, one per zone, Parallel, a PVC
    per pod, a PDB of maxUnavailable 1, gRPC health readiness, a clean-shutdown grace."""
    found = log_statefulsets(docs)
    if len(found) != 1:
        return [f"{len(found)} StatefulSets run logsvc, expected 1"]
    sts = found[0]
    spec = sts["spec"]
    problems: Problems = []
    replicas = int(spec.get("replicas", 1))
    if replicas < 3 or replicas % 2 == 0:
        problems.append(f"{ref(sts)}: replicas {replicas}: use an odd number, 3 or more")
    if spec.get("podManagementPolicy") != "Parallel":
        problems.append(f"{ref(sts)}: podManagementPolicy must be Parallel")
    zone = zone_constraints(sts)
    wanted = {"maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule", "minDomains": 3}
    if len(zone) != 1 or any(zone[0].get(k) != v for k, v in wanted.items()):
        problems.append(
            f"{ref(sts)}: expected one spread constraint on {ZONE_KEY} with {wanted}, found {zone}"
        )
    problems += check_pdb(docs, sts)
    grace = int(pod_spec(sts).get("terminationGracePeriodSeconds", 30))
    if grace < LOG_GRACE_S_MIN:
        problems.append(f"{ref(sts)}: terminationGracePeriodSeconds {grace} < {LOG_GRACE_S_MIN}")
    container = runs(sts, "logsvc")
    assert container is not None
    readiness = container.get("readinessProbe") or {}
    if "grpc" not in readiness:
        problems.append(f"{ref(sts)}: the readiness probe must be the gRPC health check")
    claims = {t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates") or []}
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts") or []}
    if not claims or not set(claims) & set(mounts):
        problems.append(f"{ref(sts)}: no volumeClaimTemplate is mounted into logsvc")
    for claim in claims.values():
        if not claim["spec"].get("storageClassName"):
            problems.append(f"{ref(sts)}: claim {claim['metadata']['name']} names no StorageClass")
    problems += check_resources(sts)
    return problems


def check_storage_classes(docs: list[Doc], required: bool) -> Problems:
    """The classes the log's claims name bind WaitForFirstConsumer (a volume is made in the
    zone of the pod); an overlay must render them, the base may leave them out."""
    problems: Problems = []
    classes = {sc["metadata"]["name"]: sc for sc in of_kind(docs, "StorageClass")}
    for sts in of_kind(docs, "StatefulSet"):
        for claim in sts["spec"].get("volumeClaimTemplates") or []:
            name = claim["spec"].get("storageClassName")
            sc = classes.get(str(name))
            if sc is None:
                if required:
                    problems.append(f"{ref(sts)}: StorageClass {name!r} is not rendered")
                continue
            if sc.get("volumeBindingMode") != "WaitForFirstConsumer":
                problems.append(f"{ref(sc)}: volumeBindingMode must be WaitForFirstConsumer")
    return problems


def check_shims(docs: list[Doc]) -> Problems:
    """The shims: a zone-spread Deployment with its PDB, a Service on 6379, and readiness,
    liveness and startup probes on the shim's /readyz and /livez (its --metrics-port)."""
    found = shim_workloads(docs)
    if len(found) != 1 or found[0]["kind"] != "Deployment":
        return [f"expected one Deployment running cacheshim, found {[ref(w) for w in found]}"]
    shim = found[0]
    problems: Problems = []
    zone = zone_constraints(shim)
    if len(zone) != 1 or zone[0].get("maxSkew") != 1:
        problems.append(f"{ref(shim)}: expected one spread constraint on {ZONE_KEY}, maxSkew 1")
    problems += check_pdb(docs, shim)
    container = runs(shim, "cacheshim")
    assert container is not None
    services = [
        svc
        for svc in of_kind(docs, "Service")
        if service_selects(svc, pod_labels(shim))
        and any(p["port"] == 6379 for p in svc["spec"].get("ports") or [])
    ]
    if len(services) != 1:
        problems.append(f"{ref(shim)}: {len(services)} Services on port 6379 select it")
    for kind, path in (("readiness", "/readyz"), ("liveness", "/livez"), ("startup", "/livez")):
        probe = container.get(f"{kind}Probe") or {}
        port = probe_port(probe)
        declared = port_of(container, port) if port is not None else None
        if (probe.get("httpGet") or {}).get("path") != path or declared is None:
            problems.append(f"{ref(shim)}: the {kind} probe must ask {path} on a declared port")
        elif str(declared.get("containerPort")) != shim_metrics_port(container):
            problems.append(f"{ref(shim)}: the {kind} probe asks a port not --metrics-port")
    problems += check_resources(shim)
    return problems


def shim_metrics_port(container: Doc) -> str | None:
    """The shim's --metrics-port, as its args give it."""
    args = [str(a) for a in container.get("args") or []]
    for i, arg in enumerate(args):
        if arg == "--metrics-port" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--metrics-port="):
            return arg.partition("=")[2]
    return None


def snapshotter_workloads(docs: list[Doc]) -> list[Doc]:
    return [w for w in workloads(docs) if runs(w, "memlog")]


def check_snapshotter(docs: list[Doc]) -> Problems:
    """One snapshotter: a Deployment of one replica that never runs two at once (Recreate),
    with its resources set (it holds the whole keyspace)."""
    found = snapshotter_workloads(docs)
    if len(found) != 1 or found[0]["kind"] != "Deployment":
        return [f"expected one Deployment running `memlog`, found {[ref(w) for w in found]}"]
    w = found[0]
    problems: Problems = []
    if int(w["spec"].get("replicas", 1)) != 1:
        problems.append(f"{ref(w)}: one replica (two only waste work)")
    if (w["spec"].get("strategy") or {}).get("type") != "Recreate":
        problems.append(f"{ref(w)}: strategy Recreate (a rollout would run two at once)")
    problems += check_resources(w)
    return problems


# -- security ----------------------------------------------------------------------------


def check_security(docs: list[Doc]) -> Problems:
    """Non-root, read-only root file system, no privilege escalation, no capabilities,
    the runtime's seccomp profile: the "restricted" Pod Security Standard and more."""
    problems: Problems = []
    for w in workloads(docs):
        pod = pod_spec(w).get("securityContext") or {}
        if pod.get("runAsNonRoot") is not True:
            problems.append(f"{ref(w)}: the pod's runAsNonRoot must be true")
        if int(pod.get("runAsUser", 0)) == 0:
            problems.append(f"{ref(w)}: the pod must set a non-zero runAsUser")
        if (pod.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            problems.append(f"{ref(w)}: seccompProfile must be RuntimeDefault")
        for c in containers(w):
            sc = c.get("securityContext") or {}
            where = f"{ref(w)} container {c['name']}"
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem must be true")
            if sc.get("privileged"):
                problems.append(f"{where}: must not be privileged")
            if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
                problems.append(f"{where}: capabilities must drop ALL")
            if int(sc.get("runAsUser", pod.get("runAsUser", 0))) == 0:
                problems.append(f"{where}: runs as root")
    return problems


# -- the command lines, through the real argument parsers ----------------------------------


class CliError(ValueError):
    pass


@dataclass(frozen=True)
class Program:
    name: str
    build_parser: Callable[[], argparse.ArgumentParser]
    env_prefix: str


PROGRAMS = {
    "logsvc": Program("logsvc", logsvc_cli.build_parser, logsvc_cli.ENV_PREFIX),
    "cacheshim": Program("cacheshim", cacheshim_cli.build_parser, cacheshim_cli.ENV_PREFIX),
    # `memlog snapshot` (the snapshotter) reads only its log credentials' variables
    # (MEMLOG_LOG_TLS_*, named in their help): prefix "".
    "memlog": Program("memlog", memlog_cli.build_parser, ""),
}


@contextlib.contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ is exactly `env` inside (the parsers read their defaults from it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            found: argparse.ArgumentParser = action.choices[command]
            return found
    raise CliError(f"{parser.prog} has no command {command!r}")


def env_read_by(program: Program, command: str) -> set[str]:
    """The variables `program command` reads: prefix + each long flag's name where the
    program reads them all, and any flag's own variable (its help ends `[env NAME]`, as
    logsvc.cli.add_env_flag writes it: memlog's log credentials)."""
    sub = subparser(program.build_parser(), command)
    found = {
        match.group(1)
        for action in sub._actions
        if (match := re.search(r"\[env ([A-Z0-9_]+)\]", action.help or ""))
    }
    if program.env_prefix:
        found |= {
            logsvc_cli.env_name(program.env_prefix, option)
            for action in sub._actions
            for option in action.option_strings
            if option.startswith("--") and option != "--help"
        }
    return found


def parse_command(argv: Sequence[str], env: dict[str, str]) -> tuple[Program, argparse.Namespace]:
    """Parse argv (program first) with that program's real parser, in `env`."""
    if not argv or argv[0] not in PROGRAMS:
        raise CliError(f"runs {argv[:1]}, not one of the console scripts {sorted(PROGRAMS)}")
    program = PROGRAMS[argv[0]]
    stderr = io.StringIO()
    with environment(env), contextlib.redirect_stderr(stderr):
        try:
            args = program.build_parser().parse_args(list(argv[1:]))
        except SystemExit as exc:
            said = (stderr.getvalue().strip().splitlines() or ["(nothing)"])[-1]
            raise CliError(
                f"`{' '.join(argv)}` is rejected by {program.name}'s parser: {said}"
            ) from exc
    return program, args


def listen_port(address: str) -> int:
    _, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise CliError(f"{address!r} is not HOST:PORT")
    return int(port)


@dataclass(frozen=True)
class Started:
    """A container of a sample pod, with what its program would run with."""

    pod: Pod
    container: Doc
    env: dict[str, str]
    program: Program
    args: argparse.Namespace


def started_containers(docs: list[Doc]) -> tuple[list[Started], Problems]:
    """Every memlog container of every sample pod, parsed; problems for those that fail."""
    started: list[Started] = []
    problems: Problems = []
    for w in workloads(docs):
        for pod in sample_pods(w):
            for c in containers(w):
                where = f"{ref(w)} pod {pod.name} container {c['name']}"
                if not c.get("command"):
                    problems.append(f"{where}: sets no command (the image's CMD is not a plan)")
                    continue
                try:
                    env = container_env(docs, pod, c)
                    program, args = parse_command(command_line(c, env), env)
                except (EnvError, CliError) as exc:
                    problems.append(f"{where}: {exc}")
                    continue
                started.append(Started(pod, c, env, program, args))
    return started, problems


def check_serve(s: Started) -> Problems:
    """What `serve` would do with these flags: the real config, validated; its ports are
    the container's; its zone is the node's zone label."""
    where = f"{s.pod.name} ({s.program.name})"
    problems: Problems = []
    args = s.args
    if args.command != "serve":
        return [f"{where}: runs {args.command!r}, not serve"]
    try:
        port = listen_port(str(args.listen))
        ports = [port]
        if s.program.name == "logsvc":
            problems += files_mounted(
                s, args, ("tls_cert", "tls_key", "tls_ca", "client_certs", "tokens")
            )
            # The files are the cluster's (Secrets); the rest of the configuration is read.
            offline = copy.copy(args)
            for name in ("tls_cert", "tls_key", "tls_ca", "client_certs", "tokens"):
                setattr(offline, name, None)
            config = logsvc_cli.config_from_args(offline)
            config.validate()
            peer_port = listen_port(config.peer_listen_address())
            declared_peer = port_of(s.container, peer_port)
            if declared_peer is None or declared_peer.get("name") != "peer":
                problems.append(
                    f"{where}: the peer port {peer_port} is not declared as the port named "
                    "'peer' (NetworkPolicies refer to it by name)"
                )
            declared_client = port_of(s.container, port)
            if declared_client is not None and declared_client.get("name") != "grpc":
                problems.append(f"{where}: the client port {port} is not named 'grpc'")
            if config.metrics_listen:
                metrics_port = listen_port(config.metrics_listen)
                ports.append(metrics_port)
                declared_metrics = port_of(s.container, metrics_port)
                if declared_metrics is not None and declared_metrics.get("name") != "metrics":
                    problems.append(
                        f"{where}: the metrics port {metrics_port} is not named 'metrics' "
                        "(the metrics NetworkPolicy refers to it by name)"
                    )
            if config.id != s.pod.name:
                problems.append(f"{where}: --id {config.id!r} is not the pod's name")
            mounts = [m["mountPath"] for m in s.container.get("volumeMounts") or []]
            if str(config.data_dir) not in mounts:
                problems.append(f"{where}: --data-dir {config.data_dir} is not a mounted volume")
            zone = config.zone
        else:
            if not cacheshim_cli.log_addresses(args):
                raise CliError("--log names no address")
            names = [f"log_{n}" for n in ("tls_ca", "tls_cert", "tls_key", "token_file")]
            problems += files_mounted(s, args, names)
            offline = copy.copy(args)
            for name in names:
                setattr(offline, name, None)
            shim = cacheshim_cli.config_from_args(offline, str(args.local_log))
            zone = shim.zone
            if not args.local_log and not zone:
                problems.append(f"{where}: neither --local-log nor --zone: reads cross zones")
            # Port 0 turns the plaintext port off (Redis's `port 0`); --tls-port opens TLS.
            tls_port = int(str(args.tls_port) or 0)
            ports = [p for p in (port, tls_port, int(args.metrics_port)) if p]
            if not ports:
                problems.append(f"{where}: neither a plaintext port nor --tls-port: serves no one")
            problems += check_tls_files(s)
    except (ConfigError, CliError, ValueError) as exc:
        return [f"{where}: {exc}"]
    for port in ports:
        if port_of(s.container, port) is None:
            problems.append(f"{where}: listens on {port}, which the container does not declare")
    if zone != s.pod.labels[ZONE_KEY]:
        problems.append(
            f"{where}: zone {zone!r} is not the node's zone label "
            f"({s.pod.labels[ZONE_KEY]!r}): take it from the downward API"
        )
    return problems


def files_mounted(s: Started, args: Any, names: Sequence[str]) -> Problems:
    """Each file flag that is set names a file under one of the container's mounts."""
    mounts = [str(m["mountPath"]) for m in s.container.get("volumeMounts") or []]
    problems: Problems = []
    for name in names:
        value = getattr(args, name, None)
        if value and not any(str(value).startswith(m.rstrip("/") + "/") for m in mounts):
            flag = "--" + name.replace("_", "-")
            problems.append(f"{s.pod.name}: {flag} {value} is not under a mounted volume")
    return problems


TLS_FILE_FLAGS = ("tls_cert_file", "tls_key_file", "tls_ca_cert_file", "tls_ca_cert_dir")


def secret_mount(s: Started, path: str) -> Doc | None:
    """The read-only mount of a Secret volume that holds `path`, if there is one."""
    volumes = {v["name"]: v for v in pod_spec(s.pod.workload).get("volumes") or []}
    for mount in s.container.get("volumeMounts") or []:
        inside = path.startswith(mount["mountPath"].rstrip("/") + "/")
        volume = volumes.get(mount["name"]) or {}
        if inside and "secret" in volume and mount.get("readOnly") is True:
            found: Doc = mount
            return found
    return None


def check_tls_files(s: Started) -> Problems:
    """Every certificate, key and CA file the shim's TLS flags name comes from a Secret,
    mounted read-only (never a ConfigMap, never the image)."""
    problems: Problems = []
    for flag in TLS_FILE_FLAGS:
        path = str(getattr(s.args, flag, "") or "")
        if path and secret_mount(s, path) is None:
            problems.append(
                f"{s.pod.name} ({s.program.name}): --{flag.replace('_', '-')} {path} is not in "
                "a Secret volume mounted read-only"
            )
    return problems


def check_env_names(s: Started) -> Problems:
    """Each variable is one the program reads, or is used by a $(NAME) in this container."""
    read = env_read_by(s.program, str(s.args.command))
    used: set[str] = set()
    texts = [
        *(str(x) for x in [*s.container.get("command", []), *s.container.get("args", [])]),
        *(str(e["value"]) for e in s.container.get("env") or [] if "value" in e),
    ]
    for _, probe in probes(s.container):
        texts += [str(x) for x in (probe.get("exec") or {}).get("command", [])]
    for text in texts:
        used |= references(text)
    return [
        f"{s.pod.name} ({s.program.name}): environment variable {name} is neither read by "
        f"`{s.program.name} {s.args.command}` nor used in a $({name})"
        for name in sorted(s.env)
        if name not in read and name not in used
    ]


def check_exec_probes(s: Started) -> Problems:
    """An exec probe that runs a memlog program is parsed by its real parser too."""
    problems: Problems = []
    for kind, probe in probes(s.container):
        command = (probe.get("exec") or {}).get("command")
        if not command or command[0] not in PROGRAMS:
            continue
        argv = [expand(str(a), s.env) for a in command]
        try:
            _, args = parse_command(argv, s.env)
            if hasattr(args, "addr"):
                port = listen_port(str(args.addr).split(",")[0])
                if port_of(s.container, port) is None:
                    problems.append(f"{s.pod.name} {kind}: asks port {port}, not declared")
        except CliError as exc:
            problems.append(f"{s.pod.name} {kind}: {exc}")
    return problems


def check_snapshot_command(s: Started) -> Problems:
    """`memlog snapshot` as a long-running snapshotter: resident (--follow) with a cadence
    memlog's own check accepts, its temp files on a mounted volume (the root file system is
    read-only), at least one log address."""
    where = f"{s.pod.name} ({s.program.name})"
    args = s.args
    if args.command != "snapshot":
        return [f"{where}: runs {args.command!r}, not snapshot"]
    problems: Problems = []
    if not args.follow:
        problems.append(f"{where}: no --follow: it restores and replays for every snapshot")
    try:
        if memlog_cli.snapshot_cadence(args) is None:
            problems.append(f"{where}: no cadence: it writes one snapshot and exits")
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
    mounts = [m["mountPath"] for m in s.container.get("volumeMounts") or []]
    if args.temp_dir is None or str(args.temp_dir) not in mounts:
        problems.append(
            f"{where}: --temp-dir {args.temp_dir} is not a mounted volume (the root file "
            "system is read-only)"
        )
    if not [a for a in str(args.log).split(",") if a.strip()]:
        problems.append(f"{where}: --log names no address")
    return problems


def check_cli(docs: list[Doc]) -> Problems:
    started, problems = started_containers(docs)
    for s in started:
        if s.program.name == "memlog":
            problems += check_snapshot_command(s)
        else:
            problems += check_serve(s)
        problems += check_env_names(s)
        problems += check_exec_probes(s)
    return problems


# -- peers: what --peers and --log say vs. the names the headless Service creates ---------


def peer_dns_names(docs: list[Doc], sts: Doc, port: int) -> dict[str, str]:
    """pod name -> the DNS name:port the headless Service gives it."""
    name = sts["metadata"]["name"]
    service = sts["spec"]["serviceName"]
    ns = namespace(sts)
    return {
        f"{name}-{i}": f"{name}-{i}.{service}.{ns}.svc.{CLUSTER_DOMAIN}:{port}"
        for i in range(int(sts["spec"].get("replicas", 1)))
    }


def port_number(container: Doc, name: str) -> int | None:
    declared = port_of(container, name)
    return None if declared is None else int(declared["containerPort"])


def service_targets(svc: Doc, container: Doc) -> set[int]:
    """The container's port numbers that the Service's ports lead to."""
    found: set[int] = set()
    for sp in svc["spec"].get("ports") or []:
        declared = port_of(container, sp.get("targetPort", sp["port"]))
        if declared is not None:
            found.add(int(declared["containerPort"]))
    return found


def differences(got: dict[str, str], want: dict[str, str]) -> str:
    parts = [f"lacks {k}={want[k]}" for k in sorted(set(want) - set(got))]
    parts += [f"has {k}={got[k]}, which is no pod" for k in sorted(set(got) - set(want))]
    parts += [
        f"says {k}={got[k]}, the headless Service names it {want[k]}"
        for k in sorted(set(got) & set(want))
        if got[k] != want[k]
    ]
    return "is not what the headless Service names: " + "; ".join(parts)


def check_peers(docs: list[Doc]) -> Problems:
    started, problems = started_containers(docs)
    if problems:
        return problems
    logs = [s for s in started if s.program.name == "logsvc" and s.args.command == "serve"]
    shims = [s for s in started if s.program.name == "cacheshim" and s.args.command == "serve"]
    snapshotters = [s for s in started if s.program.name == "memlog"]
    if not logs:
        return ["no container runs `logsvc serve`"]
    expected: dict[str, str] = {}
    for s in logs:
        try:
            port = listen_port(str(s.args.listen))
            peers = parse_peers(str(s.args.peers))
        except (CliError, ConfigError) as exc:
            problems.append(f"{s.pod.name}: {exc}")
            continue
        if s.pod.workload["kind"] != "StatefulSet":
            problems.append(f"{s.pod.name}: logsvc must run in a StatefulSet")
            continue
        svc = service_named(docs, s.pod.workload["spec"]["serviceName"], s.pod.namespace)
        if svc is None or port not in service_targets(svc, s.container):
            problems.append(f"{s.pod.name}: the headless Service does not carry port {port}")
        expected = peer_dns_names(docs, s.pod.workload, port)
        if peers != expected:
            problems.append(f"{s.pod.name}: --peers {differences(peers, expected)}")
        # Each node's peer address: the same DNS name, the port named `peer`, which the
        # headless Service carries too.
        peer_port = port_number(s.container, "peer")
        if peer_port is None:
            problems.append(f"{s.pod.name}: the container declares no port named 'peer'")
            continue
        peer_addresses = parse_peer_addresses(str(s.args.peers))
        want = peer_dns_names(docs, s.pod.workload, peer_port)
        if peer_addresses != want:
            problems.append(
                f"{s.pod.name}: the peer addresses of --peers {differences(peer_addresses, want)}"
            )
        if svc is None or peer_port not in service_targets(svc, s.container):
            problems.append(f"{s.pod.name}: the headless Service does not carry port {peer_port}")
    for s in shims:
        addresses = cacheshim_cli.log_addresses(s.args)
        if sorted(addresses) != sorted(expected.values()):
            problems.append(
                f"{s.pod.name}: --log {list(addresses)} is not the log nodes' DNS names "
                f"{sorted(expected.values())}"
            )
        if s.args.local_log and s.args.local_log not in addresses:
            problems.append(f"{s.pod.name}: --local-log {s.args.local_log} is not in --log")
    for s in snapshotters:
        addresses = tuple(a.strip() for a in str(s.args.log).split(",") if a.strip())
        if sorted(addresses) != sorted(expected.values()):
            problems.append(
                f"{s.pod.name}: the snapshotter's --log {list(addresses)} is not the log nodes' "
                f"DNS names {sorted(expected.values())}"
            )
    return problems


def console_scripts(pyproject: Path) -> dict[str, str]:
    import tomllib

    data: dict[str, Any] = tomllib.loads(pyproject.read_text())
    scripts: dict[str, str] = data["project"]["scripts"]
    return scripts


def check_commands_are_console_scripts(docs: list[Doc], scripts: dict[str, str]) -> Problems:
    """Every container (and exec probe) starts an installed console script by name."""
    problems: Problems = []
    for w in workloads(docs):
        for c in containers(w):
            commands = [c.get("command") or []]
            commands += [(p.get("exec") or {}).get("command") or [] for _, p in probes(c)]
            for command in commands:
                if command and command[0] not in scripts:
                    problems.append(
                        f"{ref(w)} container {c['name']}: runs {command[0]!r}, not one of the "
                        f"console scripts {sorted(scripts)}"
                    )
    return problems


def check_single_image(docs: list[Doc]) -> Problems:
    images = {c.get("image") for w in workloads(docs) for c in containers(w)}
    if len(images) != 1:
        return [f"expected one image for every container, found {sorted(map(str, images))}"]
    image = str(next(iter(images)))
    if not re.search(r":[\w.-]+$", image.rsplit("/", 1)[-1]) and "@sha256:" not in image:
        return [f"image {image!r} has no tag or digest"]
    return []


ALL_CHECKS: dict[str, Callable[[list[Doc]], Problems]] = {
    "schemas": check_schemas,
    "certificates": check_certificates,
    "selectors": check_selectors,
    "ports": check_ports,
    "headless": check_headless_services,
    "log": check_log,
    "shims": check_shims,
    "snapshotter": check_snapshotter,
    "security": check_security,
    "cli": check_cli,
    "peers": check_peers,
    "image": check_single_image,
}


def main() -> int:  # pragma: no cover - a person's tool: python -m tests.deploy.checks
    from tests.deploy.manifests import KUSTOMIZATIONS, render

    failed = 0
    for name in KUSTOMIZATIONS:
        docs = render(name)
        for check, run in ALL_CHECKS.items():
            for problem in run(docs):
                failed += 1
                print(f"{name}: {check}: {problem}")
    print("ok" if not failed else f"{failed} problems")
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
