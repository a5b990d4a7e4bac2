"""Schemas for the custom resources the manifests use (cert-manager's Certificate and Issuer;
the Prometheus Operator's ServiceMonitor and PrometheusRule), which kubernetes-validate does
not ship: JSON Schema, strict like the built-in check (an unknown or misspelt field is an
error), covering the fields that deploy/ uses or may reasonably use, with the types and enums
of each project's API reference.
"""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]

Schema = dict[str, Any]

# A Go duration as cert-manager parses it (time.ParseDuration): "2160h", "1h30m".
_DURATION: Schema = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"}
_STRINGS: Schema = {"type": "array", "items": {"type": "string"}}


def _object(properties: Schema, required: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_METADATA = _object(
    {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    ("name",),
)
_ISSUER_REF = _object(
    {"name": {"type": "string"}, "kind": {"type": "string"}, "group": {"type": "string"}},
    ("name",),
)
KEY_USAGES = (
    "signing", "digital signature", "content commitment", "key encipherment", "key agreement",
    "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
    "server auth", "client auth", "code signing", "email protection", "s/mime",
    "ipsec end system", "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
    "microsoft sgc", "netscape sgc",
)  # fmt: skip
_CERTIFICATE_SPEC = _object(
    {
        "secretName": {"type": "string"},
        "commonName": {"type": "string"},
        "dnsNames": _STRINGS,
        "ipAddresses": _STRINGS,
        "uris": _STRINGS,
        "emailAddresses": _STRINGS,
        "duration": _DURATION,
        "renewBefore": _DURATION,
        "isCA": {"type": "boolean"},
        "usages": {"type": "array", "items": {"enum": list(KEY_USAGES)}},
        "privateKey": _object(
            {
                "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                "size": {"type": "integer"},
                "encoding": {"enum": ["PKCS1", "PKCS8"]},
                "rotationPolicy": {"enum": ["Never", "Always"]},
            }
        ),
        "issuerRef": _ISSUER_REF,
        "secretTemplate": _object(
            {
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            }
        ),
        "revisionHistoryLimit": {"type": "integer", "minimum": 1},
    },
    ("secretName", "issuerRef"),
)
_ISSUER_SPEC: Schema = {
    **_object(
        {
            "selfSigned": _object({"crlDistributionPoints": _STRINGS}),
            "ca": _object(
                {
                    "secretName": {"type": "string"},
                    "crlDistributionPoints": _STRINGS,
                    "ocspServers": _STRINGS,
                }
            ),
        }
    ),
    # Exactly one kind of issuer.
    "minProperties": 1,
    "maxProperties": 1,
}


# monitoring.coreos.com/v1 (the Prometheus Operator).
_LABEL_SELECTOR = _object(
    {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": _object(
                {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": _STRINGS,
                },
                ("key", "operator"),
            ),
        },
    }
)
# A Prometheus duration: "15s", "1m30s".
_PROM_DURATION: Schema = {"type": "string", "pattern": r"^(([0-9]+)(y|w|d|h|m|s|ms))+$"}
_ENDPOINT = _object(
    {
        "port": {"type": "string"},
        "targetPort": {"type": ["string", "integer"]},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https"]},
        "interval": _PROM_DURATION,
        "scrapeTimeout": _PROM_DURATION,
        "honorLabels": {"type": "boolean"},
    }
)
_SERVICE_MONITOR_SPEC = _object(
    {
        "selector": _LABEL_SELECTOR,
        "namespaceSelector": _object({"any": {"type": "boolean"}, "matchNames": _STRINGS}),
        "endpoints": {"type": "array", "items": _ENDPOINT, "minItems": 1},
        "jobLabel": {"type": "string"},
        "targetLabels": _STRINGS,
        "podTargetLabels": _STRINGS,
    },
    ("selector", "endpoints"),
)
_STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
_RULE = _object(
    {
        "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
        "record": {"type": "string"},
        "expr": {"type": "string", "minLength": 1},
        "for": _PROM_DURATION,
        "labels": _STRING_MAP,
        "annotations": _STRING_MAP,
    },
    ("expr",),
)
_PROMETHEUS_RULE_SPEC = _object(
    {
        "groups": {
            "type": "array",
            "items": _object(
                {
                    "name": {"type": "string"},
                    "interval": _PROM_DURATION,
                    "rules": {"type": "array", "items": _RULE},
                },
                ("name", "rules"),
            ),
        }
    },
    ("groups",),
)


def _resource(kind: str, spec: Schema, api_version: str = "cert-manager.io/v1") -> Schema:
    return _object(
        {
            "apiVersion": {"const": api_version},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


SCHEMAS: dict[tuple[str, str], Schema] = {
    ("cert-manager.io/v1", "Certificate"): _resource("Certificate", _CERTIFICATE_SPEC),
    ("cert-manager.io/v1", "Issuer"): _resource("Issuer", _ISSUER_SPEC),
    ("cert-manager.io/v1", "ClusterIssuer"): _resource("ClusterIssuer", _ISSUER_SPEC),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): _resource(
        "ServiceMonitor", _SERVICE_MONITOR_SPEC, "monitoring.coreos.com/v1"
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): _resource(
        "PrometheusRule", _PROMETHEUS_RULE_SPEC, "monitoring.coreos.com/v1"
    ),
}


def is_custom(doc: dict[str, Any]) -> bool:
    return (doc.get("apiVersion"), doc.get("kind")) in SCHEMAS


def problems(doc: dict[str, Any]) -> list[str]:
    """What is wrong with a custom resource against its schema (path: message)."""
    schema = SCHEMAS[(doc["apiVersion"], doc["kind"])]
    validator = jsonschema.Draft202012Validator(schema)
    return [
        f"/{'/'.join(str(p) for p in error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]
