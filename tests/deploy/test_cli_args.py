"""The manifests start the same programs with the same flags as our tests: every container's
command line, with its environment (downward API, ConfigMaps, $(VAR) expansion) resolved as
the kubelet would, goes through the real `logsvc` / `cacheshim` parsers and configuration;
the peers the StatefulSet lists are the names its headless Service creates."""

from __future__ import annotations

from pathlib import Path

import pytest

from cacheshim.launcher import shim_command, snapshotter_command
from logsvc.cli import env_name
from logsvc.local import LocalCluster, local_tls
from tests.deploy import checks
from tests.deploy.manifests import KUSTOMIZATIONS, ZONE_KEY, Doc, one, render, sample_pods
from tests.deploy.podenv import command_line, container_env, expand
from tests.deploy.test_manifests import Mutation, caught, container, log, shim


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_every_command_line_is_accepted_by_the_real_parsers(name: str) -> None:
    docs = render(name)
    assert checks.check_cli(docs) == []
    started, problems = checks.started_containers(docs)
    assert problems == []
    programs = sorted({(s.program.name, s.args.command) for s in started})
    assert programs == [("cacheshim", "serve"), ("logsvc", "serve"), ("memlog", "snapshot")]


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_peers_are_the_headless_service_dns_names(name: str) -> None:
    docs = render(name)
    assert checks.check_peers(docs) == []
    ns = "default" if name == "base" else "memlog"
    started, _ = checks.started_containers(docs)
    node = next(s for s in started if s.pod.name == "memlog-log-1")
    assert node.args.id == "memlog-log-1"
    assert (
        node.args.peers.split(",")[1]
        == f"memlog-log-1=memlog-log-1.memlog-log-peers.{ns}.svc.cluster.local:7001/7002"
    )


def test_a_log_pod_gets_its_identity_and_zone_from_the_downward_api() -> None:
    docs = render("production")
    sts = log(docs)
    pods = sample_pods(sts, zones=("eu-west-1a", "eu-west-1b", "eu-west-1c"))
    for pod in pods:
        env = container_env(docs, pod, container(sts))
        assert env["LOGSVC_ID"] == pod.name
        assert env["LOGSVC_ZONE"] == pod.labels[ZONE_KEY]
        argv = command_line(container(sts), env)
        assert "$(" not in " ".join(argv), argv


def test_a_shim_finds_its_zone_local_log_node_by_zone() -> None:
    # No fixed --local-log: the shim asks each log node's Status for its zone
    # (cacheshim.cli.zone_local_log, tested in tests/cacheshim/test_cli_zone.py).
    docs = render("kind")
    started, _ = checks.started_containers(docs)
    shims = [s for s in started if s.program.name == "cacheshim"]
    assert shims
    for s in shims:
        assert s.args.local_log == ""
        assert s.args.zone == s.pod.labels[ZONE_KEY]
        assert s.env["CACHESHIM_SHIM_ID"] == s.pod.name


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_a_shim_reads_its_staleness_limit_from_the_config_map(name: str) -> None:
    # CACHESHIM_MAX_STALENESS_MS (0: local reads served however stale; docs/availability.md)
    # reaches the real parser as --max-staleness-ms.
    started, _ = checks.started_containers(render(name))
    shims = [s for s in started if s.program.name == "cacheshim"]
    assert shims
    for s in shims:
        assert s.env["CACHESHIM_MAX_STALENESS_MS"] == "0"
        assert s.args.max_staleness_ms == 0


def test_expansion_follows_kubernetes() -> None:
    env = {"A": "x", "B": "y"}
    assert expand("$(A).$(B)", env) == "x.y"
    assert expand("$(C)", env) == "$(C)", "an undefined reference stays as written"
    assert expand("$$(A)", env) == "$(A)", "$$ escapes"


# -- broken manifests -------------------------------------------------------------------


def args_of(docs: list[Doc], kind: str, name: str) -> list[str]:
    found: list[str] = container(one(docs, kind, name))["args"]
    return found


def test_cli_catches_an_unknown_flag() -> None:
    def mutate(docs: list[Doc]) -> None:
        args_of(docs, "StatefulSet", "memlog-log")[0] = "--listen-on"

    assert "rejected by logsvc's parser" in caught(checks.check_cli, mutate)


def test_cli_catches_a_missing_required_flag() -> None:
    def mutate(docs: list[Doc]) -> None:
        args = args_of(docs, "Deployment", "memlog-shim")
        i = args.index("--log")
        del args[i : i + 2]

    assert "--log" in caught(checks.check_cli, mutate)


def test_cli_catches_a_bad_value_for_a_typed_flag() -> None:
    def mutate(docs: list[Doc]) -> None:
        one(docs, "ConfigMap", container(log(docs))["envFrom"][0]["configMapRef"]["name"])["data"][
            "LOGSVC_TICK_MS"
        ] = "fast"

    assert "rejected" in caught(checks.check_cli, mutate)


def test_cli_catches_a_config_the_node_would_refuse() -> None:
    def mutate(docs: list[Doc]) -> None:
        cm = one(docs, "ConfigMap", container(log(docs))["envFrom"][0]["configMapRef"]["name"])
        cm["data"]["LOGSVC_ELECTION_TICKS"] = "2"

    assert "--election-ticks must be greater" in caught(checks.check_cli, mutate)


def test_cli_catches_an_environment_variable_nobody_reads() -> None:
    def mutate(docs: list[Doc]) -> None:
        cm = one(docs, "ConfigMap", container(shim(docs))["envFrom"][0]["configMapRef"]["name"])
        cm["data"]["CACHESHIM_LINEARIZABLE_READ"] = "yes"

    assert "CACHESHIM_LINEARIZABLE_READ is neither read" in caught(checks.check_cli, mutate)


def test_cli_catches_a_missing_config_map() -> None:
    def mutate(docs: list[Doc]) -> None:
        docs.remove(
            one(docs, "ConfigMap", container(shim(docs))["envFrom"][0]["configMapRef"]["name"])
        )

    assert "not rendered" in caught(checks.check_cli, mutate)


def test_cli_catches_a_fixed_zone() -> None:
    def mutate(docs: list[Doc]) -> None:
        env = container(shim(docs))["env"]
        zone = next(e for e in env if e["name"] == "CACHESHIM_ZONE")
        zone.pop("valueFrom")
        zone["value"] = "a"

    assert "not the node's zone label" in caught(checks.check_cli, mutate)


def test_cli_catches_a_listen_port_the_container_does_not_declare() -> None:
    def mutate(docs: list[Doc]) -> None:
        args = args_of(docs, "Deployment", "memlog-shim")
        args[args.index("--listen") + 1] = "0.0.0.0:6380"

    assert "listens on 6380" in caught(checks.check_cli, mutate)


def test_cli_catches_an_id_that_is_not_the_pod_name() -> None:
    def mutate(docs: list[Doc]) -> None:
        env = container(log(docs))["env"]
        env[:] = [e for e in env if e["name"] != "LOGSVC_ID"]
        container(log(docs))["args"] += ["--id", "memlog-log-0"]

    assert "is not the pod's name" in caught(checks.check_cli, mutate)


def test_cli_catches_a_probe_the_parser_rejects() -> None:
    def mutate(docs: list[Doc]) -> None:
        container(log(docs))["livenessProbe"]["exec"]["command"] = ["logsvc", "status"]

    assert "livenessProbe" in caught(checks.check_cli, mutate)


def test_cli_catches_a_command_that_is_not_ours() -> None:
    def mutate(docs: list[Doc]) -> None:
        container(shim(docs))["command"] = ["python", "-m", "cacheshim.cli", "serve"]

    assert "not one of the console scripts" in caught(checks.check_cli, mutate)


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        # The headless Service renamed but --peers not updated.
        (
            lambda docs: (
                one(docs, "Service", "memlog-log-peers")["metadata"].update(name="memlog-raft"),
                log(docs)["spec"].update(serviceName="memlog-raft"),
            ),
            "not what the headless Service names",
        ),
        # Five replicas, three peers.
        (lambda docs: log(docs)["spec"].update(replicas=5), "not what the headless Service"),
        # A peer's port that is not the one the nodes listen on.
        (
            lambda docs: args_of(docs, "StatefulSet", "memlog-log").__setitem__(
                -1, args_of(docs, "StatefulSet", "memlog-log")[-1].replace(":7001/", ":7005/", 1)
            ),
            "not what the headless Service names",
        ),
        # The shims' --log missing a node.
        (
            lambda docs: args_of(docs, "Deployment", "memlog-shim").__setitem__(
                -1, args_of(docs, "Deployment", "memlog-shim")[-1].rsplit(",", 1)[0]
            ),
            "is not the log nodes' DNS names",
        ),
        # The headless Service on another port than the nodes listen on.
        (
            lambda docs: one(docs, "Service", "memlog-log-peers")["spec"]["ports"][0].update(
                targetPort=7002
            ),
            "does not carry port 7001",
        ),
    ],
)
def test_peers_catch(mutate: Mutation, expect: str) -> None:
    assert expect in caught(checks.check_peers, mutate)


def test_peers_catch_a_namespace_change_that_the_dns_names_miss() -> None:
    # $(POD_NAMESPACE) follows any namespace; a literal one would not.
    def mutate(docs: list[Doc]) -> None:
        args = args_of(docs, "StatefulSet", "memlog-log")
        args[-1] = expand(args[-1], {"POD_NAMESPACE": "memlog"})
        for d in docs:
            if d["kind"] not in ("Namespace", "StorageClass"):
                d["metadata"]["namespace"] = "memlog-staging"

    assert "memlog-staging" in caught(checks.check_peers, mutate)


def flags_given(s: checks.Started) -> set[str]:
    """The `serve` flags a container sets, on its command line or by environment."""
    sub = checks.subparser(s.program.build_parser(), "serve")
    options = {o for a in sub._actions for o in a.option_strings if o.startswith("--")}
    argv = command_line(s.container, s.env)
    on_line = {a.split("=", 1)[0] for a in argv if a.startswith("--")}
    by_env = {o for o in options if env_name(s.program.env_prefix, o) in s.env}
    return (on_line | by_env) & options


def test_the_manifests_set_the_flags_the_local_launcher_sets(tmp_path: Path) -> None:
    # `memlog up` and the integration tests start the same programs with these flags, with
    # the credentials memlog up makes (peer mutual TLS, client certificates).
    cluster = LocalCluster(data_dir=tmp_path, tls=local_tls(tmp_path))
    launcher = {
        "logsvc": {a for a in cluster.command("a") if a.startswith("--")},
        "cacheshim": {a for a in shim_command(cluster, 0, 6379) if a.startswith("--")},
    }
    started, _ = checks.started_containers(render("production"))
    for program, wanted in launcher.items():
        given = set.union(*(flags_given(s) for s in started if s.program.name == program))
        # The one difference: a shim finds its zone's log node by --zone, not --local-log.
        assert wanted - given == ({"--local-log"} if program == "cacheshim" else set())


# -- the snapshotter ----------------------------------------------------------------------


def snapshotter(docs: list[Doc]) -> Doc:
    return one(docs, "Deployment", "memlog-snapshotter")


def given_values(s: checks.Started) -> dict[str, str]:
    """flag -> value of the flags on a container's command line (after $(VAR) expansion)."""
    argv = command_line(s.container, s.env)
    return {a: argv[i + 1] for i, a in enumerate(argv) if a.startswith("--") and i + 1 < len(argv)}


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_the_snapshotter_runs_memlog_up_s_command_line(name: str, tmp_path: Path) -> None:
    # The same program, subcommand, flags and cadence as the snapshotter `memlog up` runs;
    # only the addresses and the temp folder are the cluster's own.
    docs = render(name)
    started, problems = checks.started_containers(docs)
    assert problems == []
    found = [s for s in started if s.program.name == "memlog"]
    assert len(found) == 1, "one snapshotter pod"
    s = found[0]
    local = snapshotter_command(LocalCluster(data_dir=tmp_path), tmp_path / "tmp")
    assert local[1:4] == ["-m", "cacheshim.launcher", "snapshot"]
    assert command_line(s.container, s.env)[:2] == ["memlog", "snapshot"]
    want = {a: local[i + 1] for i, a in enumerate(local) if a.startswith("--")}
    got = given_values(s)
    assert set(got) == set(want)
    for flag in ("--every-s", "--min-records"):
        assert float(got[flag]) == float(want[flag]), flag
    assert s.args.every_s == float(want["--every-s"])
    ns = "default" if name == "base" else "memlog"
    assert sorted(s.args.log.split(",")) == [
        f"memlog-log-{i}.memlog-log-peers.{ns}.svc.cluster.local:7001" for i in range(3)
    ]


def test_cli_catches_a_one_shot_snapshotter() -> None:
    def mutate(docs: list[Doc]) -> None:
        args = container(snapshotter(docs))["args"]
        i = args.index("--every-s")
        del args[i : i + 2]

    assert "no --every-s" in caught(checks.check_cli, mutate)


def test_cli_catches_a_temp_dir_on_the_read_only_root() -> None:
    def mutate(docs: list[Doc]) -> None:
        args = container(snapshotter(docs))["args"]
        args[args.index("--temp-dir") + 1] = "/tmp"

    assert "--temp-dir /tmp is not a mounted volume" in caught(checks.check_cli, mutate)


def test_cli_catches_a_snapshotter_flag_the_parser_rejects() -> None:
    def mutate(docs: list[Doc]) -> None:
        container(snapshotter(docs))["args"] += ["--interval", "60"]

    assert "rejected by memlog's parser" in caught(checks.check_cli, mutate)


def test_peers_catch_a_snapshotter_that_misses_a_log_node() -> None:
    def mutate(docs: list[Doc]) -> None:
        args = container(snapshotter(docs))["args"]
        i = args.index("--log") + 1
        args[i] = args[i].rsplit(",", 1)[0]

    assert "the snapshotter's --log" in caught(checks.check_peers, mutate)


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda docs: snapshotter(docs)["spec"].update(replicas=2), "one replica"),
        (
            lambda docs: snapshotter(docs)["spec"].update(strategy={"type": "RollingUpdate"}),
            "strategy Recreate",
        ),
        (lambda docs: container(snapshotter(docs)).pop("resources"), "no requests.memory"),
        (lambda docs: docs.remove(snapshotter(docs)), "expected one Deployment running `memlog`"),
    ],
)
def test_snapshotter_check_catches(mutate: Mutation, expect: str) -> None:
    assert expect in caught(checks.check_snapshotter, mutate)


def test_security_covers_the_snapshotter() -> None:
    def mutate(docs: list[Doc]) -> None:
        container(snapshotter(docs))["securityContext"]["readOnlyRootFilesystem"] = False

    assert "memlog-snapshotter" in caught(checks.check_security, mutate)
