"""deploy/components/resp-tls (in the production overlay) and resp-auth: the shims speak TLS
only, on 6379, with a certificate cert-manager keeps in a Secret mounted read-only; the
ACL file comes from a Secret too; the hardening holds. Each check is shown to catch a break."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from cacheshim import cli as cacheshim_cli
from tests.deploy import checks, crds
from tests.deploy.manifests import DEPLOY, Doc, kubectl, of_kind, one, parse, render


def shim(docs: list[Doc]) -> Doc:
    return one(docs, "Deployment", "memlog-shim")


def shim_args(docs: list[Doc]) -> list[checks.Started]:
    started, problems = checks.started_containers(docs)
    assert problems == []
    return [s for s in started if s.program.name == "cacheshim"]


def volume(docs: list[Doc], name: str) -> Doc:
    found: Doc = next(
        v for v in shim(docs)["spec"]["template"]["spec"]["volumes"] if v["name"] == name
    )
    return found


def test_production_shims_speak_tls_only_on_6379() -> None:
    docs = render("production")
    for s in shim_args(docs):
        assert checks.listen_port(str(s.args.listen)) == 0  # no plaintext port
        assert s.args.tls_port == "6379"
        assert s.args.tls_auth_clients == "no"  # identity is the ACL user's (resp-auth)
        for flag in checks.TLS_FILE_FLAGS[:3]:
            assert str(getattr(s.args, flag)).startswith("/etc/memlog/resp-tls/")
    # The Service, its port name and the readiness probe are the plaintext setup's.
    assert checks.check_shims(docs) == []
    assert checks.check_cli(docs) == []
    assert checks.check_security(docs) == []


def test_kind_stays_plaintext() -> None:
    for s in shim_args(render("kind")):
        assert checks.listen_port(str(s.args.listen)) == 6379 and not s.args.tls_port


def test_the_certificate_is_the_mounted_secret_and_names_the_service() -> None:
    docs = render("production")
    ns = "memlog"
    certificate = one(docs, "Certificate", "memlog-resp-tls")
    secret = volume(docs, "resp-tls")["secret"]
    assert secret["secretName"] == certificate["spec"]["secretName"]
    assert secret["defaultMode"] == 0o440
    assert shim(docs)["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001
    service = one(docs, "Service", "memlog")["metadata"]["name"]
    for name in (service, f"{service}.{ns}.svc", f"{service}.{ns}.svc.cluster.local"):
        assert name in certificate["spec"]["dnsNames"]
    assert "server auth" in certificate["spec"]["usages"]
    # The issuer chain is rendered: server cert <- CA Issuer <- CA cert <- self-signed Issuer.
    issuers = {i["metadata"]["name"]: i for i in of_kind(docs, "Issuer")}
    ca_issuer = issuers[certificate["spec"]["issuerRef"]["name"]]
    ca_cert = one(docs, "Certificate", "memlog-ca")
    assert ca_issuer["spec"]["ca"]["secretName"] == ca_cert["spec"]["secretName"]
    assert ca_cert["spec"]["isCA"] is True
    assert "selfSigned" in issuers[ca_cert["spec"]["issuerRef"]["name"]]["spec"]


def test_custom_resources_validate_strictly() -> None:
    docs = render("production")
    custom = {
        (d["kind"], d["metadata"]["name"]): crds.problems(d) for d in docs if crds.is_custom(d)
    }
    assert {
        ("Issuer", "memlog-selfsigned"), ("Certificate", "memlog-ca"), ("Issuer", "memlog-ca"),
        ("Certificate", "memlog-resp-tls"), ("Certificate", "memlog-log-tls"),
        ("Certificate", "memlog-shim-tls"),
    } == set(custom)  # fmt: skip
    assert all(problems == [] for problems in custom.values()), custom
    one(docs, "Certificate", "memlog-resp-tls")["spec"]["dnsName"] = ["memlog"]
    one(docs, "Certificate", "memlog-ca")["spec"]["duration"] = "10 years"
    one(docs, "Issuer", "memlog-ca")["spec"]["selfSigned"] = {}  # two kinds of issuer
    problems = "\n".join(checks.check_schemas(docs))
    assert "'dnsName' was unexpected" in problems
    assert "'10 years' does not match" in problems
    assert "Issuer/memlog-ca" in problems


def test_tls_files_must_come_from_a_read_only_secret() -> None:
    def broken(mutate: str) -> str:
        docs = render("production")
        container = shim(docs)["spec"]["template"]["spec"]["containers"][0]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "resp-tls")
        if mutate == "writable":
            del mount["readOnly"]
        elif mutate == "emptydir":
            volume(docs, "resp-tls").pop("secret")
            volume(docs, "resp-tls")["emptyDir"] = {}
        elif mutate == "elsewhere":
            mount["mountPath"] = "/etc/other"
        return "\n".join(checks.check_cli(docs))

    for mutate in ("writable", "emptydir", "elsewhere"):
        assert "is not in a Secret volume mounted read-only" in broken(mutate), mutate


def test_a_tls_port_the_container_does_not_declare_is_caught() -> None:
    docs = render("production")
    cm = next(
        c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("memlog-shim")
    )
    cm["data"]["CACHESHIM_TLS_PORT"] = "6380"
    assert "listens on 6380, which the container does not declare" in "\n".join(
        checks.check_cli(docs)
    )


# -- resp-auth: the ACL file from a Secret --------------------------------------------------


def render_with_auth(tmp_path: Path) -> list[Doc]:
    """production plus components/resp-auth, rendered from a kustomization in tmp_path."""
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {os.path.relpath(DEPLOY / 'overlays' / 'production', tmp_path)}\n"
        f"components:\n  - {os.path.relpath(DEPLOY / 'components' / 'resp-auth', tmp_path)}\n"
    )
    result = subprocess.run(
        [kubectl(), "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return parse(result.stdout)


def serve_has_aclfile() -> bool:
    sub = checks.subparser(cacheshim_cli.build_parser(), "serve")
    return any("--aclfile" in a.option_strings for a in sub._actions)


def test_the_acl_file_is_a_read_only_secret(tmp_path: Path) -> None:
    docs = render_with_auth(tmp_path)
    auth = volume(docs, "auth")
    assert auth["secret"]["secretName"] == "memlog-auth"
    assert auth["secret"]["defaultMode"] == 0o440
    assert "optional" not in auth["secret"]  # no Secret, no start: fail closed
    container = shim(docs)["spec"]["template"]["spec"]["containers"][0]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "auth")
    assert mount == {"name": "auth", "mountPath": "/etc/memlog/auth", "readOnly": True}
    cm = next(
        c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].startswith("memlog-shim")
    )
    assert cm["data"]["CACHESHIM_ACLFILE"] == "/etc/memlog/auth/users.acl"
    assert checks.check_security(docs) == [] and checks.check_schemas(docs) == []


@pytest.mark.skipif(
    not serve_has_aclfile(), reason="cacheshim serve has no --aclfile yet (issue 17, ACL users)"
)
def test_the_acl_file_flag_is_one_the_shim_reads(tmp_path: Path) -> None:
    docs = render_with_auth(tmp_path)
    assert checks.check_cli(docs) == []
    for s in shim_args(docs):
        args: argparse.Namespace = s.args
        assert args.aclfile == "/etc/memlog/auth/users.acl"
