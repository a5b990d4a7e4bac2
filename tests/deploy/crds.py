"""Schemas for the custom resources the manifests use (cert-manager's Certificate and Issuer),
which kubernetes-validate does not ship: JSON Schema, strict like the built-in check (an
unknown or misspelt field is an error), covering the fields of cert-manager.io/v1 that
deploy/ uses or may reasonably use, with the types and enums of cert-manager's API reference.
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


def _resource(kind: str, spec: Schema) -> Schema:
    return _object(
        {
            "apiVersion": {"const": "cert-manager.io/v1"},
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
