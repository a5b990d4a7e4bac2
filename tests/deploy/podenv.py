"""A container's environment and command line as the kubelet would give them.

Environment: `env` entries (value, or valueFrom: fieldRef on the pod, configMapKeyRef,
secretKeyRef) and `envFrom` (configMapRef, secretRef), from the rendered ConfigMaps and
Secrets. `$(NAME)` in a value, in command and in args expands as Kubernetes expands it:
a defined variable is replaced, `$$` stands for `$`, an undefined reference stays as it is;
within `env`, a value sees only the variables defined before it.
"""

from __future__ import annotations

import base64
import re

from tests.deploy.manifests import Doc, Pod, of_kind

REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
LABEL_FIELD = re.compile(r"^metadata\.labels\['([^']+)'\]$")


class EnvError(ValueError):
    pass


def expand(text: str, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return REFERENCE.sub(replace, text)


def references(text: str) -> set[str]:
    return {m.group(1) for m in REFERENCE.finditer(text) if m.group(1)}


def _config_map(docs: list[Doc], name: str, ns: str) -> dict[str, str] | None:
    for cm in of_kind(docs, "ConfigMap"):
        meta = cm["metadata"]
        if meta["name"] == name and (meta.get("namespace") or "default") == ns:
            data: dict[str, str] = {k: str(v) for k, v in (cm.get("data") or {}).items()}
            return data
    return None


def _secret(docs: list[Doc], name: str, ns: str) -> dict[str, str] | None:
    for secret in of_kind(docs, "Secret"):
        meta = secret["metadata"]
        if meta["name"] == name and (meta.get("namespace") or "default") == ns:
            data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
            data.update({k: str(v) for k, v in (secret.get("stringData") or {}).items()})
            return data
    return None


def field_value(pod: Pod, path: str) -> str:
    """The downward API's value of `fieldRef.fieldPath` for this pod."""
    simple = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": "00000000-0000-0000-0000-000000000001",
        "spec.nodeName": "node-1",
        "spec.serviceAccountName": "default",
        "status.hostIP": "10.0.0.1",
        "status.podIP": "10.1.0.1",
    }
    if path in simple:
        return simple[path]
    label = LABEL_FIELD.match(path)
    if label:
        key = label.group(1)
        if key not in pod.labels:
            raise EnvError(f"fieldRef {path}: the pod has no label {key!r}")
        return pod.labels[key]
    raise EnvError(f"fieldRef {path}: not a field this check knows")


def _source(docs: list[Doc], pod: Pod, kind: str, ref: Doc) -> dict[str, str] | None:
    lookup = _config_map if kind == "ConfigMap" else _secret
    found = lookup(docs, str(ref["name"]), pod.namespace)
    if found is None and not ref.get("optional", False):
        raise EnvError(f"{kind}/{ref['name']} is referenced but not rendered")
    return found


def container_env(docs: list[Doc], pod: Pod, container: Doc) -> dict[str, str]:
    """Every variable the container starts with (from this spec: no image ENV)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix", ""))
        if "configMapRef" in source:
            found = _source(docs, pod, "ConfigMap", source["configMapRef"])
        elif "secretRef" in source:
            found = _source(docs, pod, "Secret", source["secretRef"])
        else:
            raise EnvError(f"envFrom {source}: unknown source")
        env.update({prefix + k: v for k, v in (found or {}).items()})
    for item in container.get("env") or []:
        name = str(item["name"])
        if "value" in item:
            env[name] = expand(str(item["value"]), env)
            continue
        value_from: Doc = item.get("valueFrom") or {}
        if "fieldRef" in value_from:
            env[name] = field_value(pod, str(value_from["fieldRef"]["fieldPath"]))
        elif "configMapKeyRef" in value_from or "secretKeyRef" in value_from:
            kind = "ConfigMap" if "configMapKeyRef" in value_from else "Secret"
            key_ref: Doc = value_from["configMapKeyRef" if kind == "ConfigMap" else "secretKeyRef"]
            data = _source(docs, pod, kind, key_ref)
            if data is not None and key_ref["key"] in data:
                env[name] = data[key_ref["key"]]
            elif not key_ref.get("optional", False):
                raise EnvError(f"{name}: {kind}/{key_ref['name']} has no key {key_ref['key']!r}")
        elif "resourceFieldRef" in value_from:
            env[name] = "1"
        else:
            env[name] = ""
    return env


def command_line(container: Doc, env: dict[str, str]) -> list[str]:
    """command + args after $(VAR) expansion (the image's ENTRYPOINT/CMD are not used
    when `command` is set, which the checks require)."""
    return [
        expand(str(a), env) for a in [*container.get("command", []), *container.get("args", [])]
    ]
