"""The `logsvc` command line against real processes: append, tail, status, flags from env."""

from __future__ import annotations

import base64
import json
import queue
import signal
import socket
import subprocess
import threading
from pathlib import Path

import grpc

from logsvc.local import claim_data_folder
from logsvc.v1 import log_pb2
from tests.logsvc.cluster import LOGSVC, REPO_ROOT, Cluster, clean_env, free_ports, rpc_failure
from tests.logsvc.conftest import Clusters

TIMEOUT_S = 10.0


def indexes(stdout: bytes) -> list[int]:
    return [int(line) for line in stdout.decode().split()]


def tail_lines(stdout: bytes) -> list[tuple[int, bytes]]:
    out = []
    for line in stdout.split(b"\n"):
        if line:
            index, sep, payload = line.partition(b"\t")
            assert sep == b"\t", line
            out.append((int(index), payload))
    return out


def test_cli_tail_formats_keep_one_record_per_line(shared_cluster: Cluster) -> None:
    c = shared_cluster
    awkward = "two\nlines\tand a tab, a \\ and \u00e9"
    first = indexes(c.cli("append", "--addr", c.addr, awkward, "plain").stdout)[0]
    c.wait_last_index(first + 1)
    tail = ("tail", "--addr", c.addr, "--from", str(first))
    text = c.cli(*tail).stdout.split(b"\n")
    assert text[:2] == [
        b"%d\ttwo\\x0alines\\x09and a tab, a \\x5c and \\xc3\\xa9" % first,
        b"%d\tplain" % (first + 1),
    ]
    rows = [json.loads(line) for line in c.cli(*tail, "--format", "json").stdout.splitlines()]
    assert [r["index"] for r in rows[:2]] == [first, first + 1]
    assert base64.b64decode(rows[0]["payload_base64"]) == awkward.encode()
    # raw: the bytes as stored, newline and all (what the format warns about).
    raw = c.cli(*tail, "--format", "raw").stdout
    assert raw.startswith(b"%d\t%s\n%d\tplain\n" % (first, awkward.encode(), first + 1))


def test_cli_append_arguments_print_their_indexes(shared_cluster: Cluster) -> None:
    c = shared_cluster
    result = c.cli("append", "--addr", c.addr, "cli-r1", "cli-r2")
    got = indexes(result.stdout)
    assert len(got) == 2 and got[1] == got[0] + 1, result.stdout
    c.wait_last_index(got[1])
    for node_id in c.nodes:
        assert c.read_all(node_id, got[0])[:2] == [(got[0], b"cli-r1"), (got[1], b"cli-r2")]


def test_cli_append_stdin_prints_one_index_per_line(shared_cluster: Cluster) -> None:
    c = shared_cluster
    lines = [f"stdin-{i}" for i in range(25)]
    result = c.cli("append", "--addr", c.addr, stdin="".join(f"{x}\n" for x in lines).encode())
    got = indexes(result.stdout)
    assert result.stdout.decode().splitlines() == [str(i) for i in got]
    assert got == list(range(got[0], got[0] + len(lines)))
    records = c.read_all(c.leader(), got[0])[: len(lines)]
    assert records == [(i, x.encode()) for i, x in zip(got, lines, strict=True)]


def test_cli_tail_prints_index_tab_payload(shared_cluster: Cluster) -> None:
    c = shared_cluster
    first = indexes(c.cli("append", "--addr", c.addr, "tail-a", "tail b with spaces").stdout)[0]
    c.wait_last_index(first + 1)
    for node_id in c.nodes:
        result = c.cli("tail", "--addr", c.address(node_id), "--from", str(first))
        assert tail_lines(result.stdout)[:2] == [
            (first, b"tail-a"),
            (first + 1, b"tail b with spaces"),
        ]
    # --from defaults to 1: the whole log.
    whole = tail_lines(c.cli("tail", "--addr", c.address("a")).stdout)
    assert [i for i, _ in whole] == list(range(1, len(whole) + 1))
    assert (first, b"tail-a") in whole


class LineReader:
    """Lines of a child's stdout, read on a thread so that a test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.proc = proc
        self.stdout = proc.stdout
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        for line in self.stdout:
            self.lines.put(line.rstrip(b"\n"))
        self.lines.put(None)  # end of output

    def next(self, timeout: float = TIMEOUT_S) -> bytes:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line within {timeout}s") from None
        if line is None:
            code = self.proc.wait(TIMEOUT_S)
            raise AssertionError(f"{self.proc.args!r} ended its output and exited {code}")
        return line


def run_follow(c: Cluster, args: list[str], env: dict[str, str] | None = None) -> None:
    """`logsvc tail ... ` must print old records, then each new one as it commits."""
    first = indexes(c.cli("append", "--addr", c.addr, "follow-old").stdout)[0]
    proc = subprocess.Popen(
        [*LOGSVC, "tail", *args, "--from", str(first)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=clean_env(env),
    )
    try:
        reader = LineReader(proc)
        assert reader.next() == f"{first}\tfollow-old".encode()
        for i in range(3):
            index = indexes(c.cli("append", "--addr", c.addr, f"follow-new-{i}").stdout)[0]
            assert reader.next() == f"{index}\tfollow-new-{i}".encode()
        assert proc.poll() is None, "tail --follow exited"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(TIMEOUT_S)
        assert proc.stderr is not None
        proc.stderr.close()
        assert proc.stdout is not None
        proc.stdout.close()


def test_cli_tail_follow_prints_new_records(shared_cluster: Cluster) -> None:
    c = shared_cluster
    follower = next(i for i in c.nodes if i != c.leader())
    run_follow(c, ["--addr", c.address(follower), "--follow"])


def test_cli_status_prints_json(shared_cluster: Cluster) -> None:
    c = shared_cluster
    leader = c.leader()
    for node_id in c.nodes:
        st = json.loads(c.cli("status", "--addr", c.address(node_id)).stdout)
        assert st["role"] == ("leader" if node_id == leader else "follower"), st
        assert st["zone"] == node_id
        assert int(st["header"]["term"]) >= 1
        assert st["header"]["leaderId"] == leader
        assert st["header"]["leaderAddress"] == c.address(leader)
        assert st["header"]["nodeId"] == node_id
        for key in ("firstIndex", "lastIndex", "commitIndex"):
            assert key in st, key


def test_cli_client_flags_from_environment(shared_cluster: Cluster) -> None:
    c = shared_cluster
    env = {"LOGSVC_ADDR": c.addr}
    # status, with the address only in the environment.
    st = json.loads(c.cli("status", env={"LOGSVC_ADDR": c.address("c")}).stdout)
    assert st["header"]["nodeId"] == "c"
    # append: a fixed producer id (and its first sequence) makes a re-run a duplicate.
    producer = {**env, "LOGSVC_PRODUCER_ID": "cli-env-producer", "LOGSVC_TIMEOUT_S": "20"}
    once = indexes(c.cli("append", "env-record", env=producer).stdout)
    again = indexes(c.cli("append", "env-record", env=producer).stdout)
    assert once == again
    # tail: --from from the environment.
    from_env = {"LOGSVC_ADDR": c.address("b"), "LOGSVC_FROM": str(once[0])}
    c.wait_last_index(once[0])
    assert tail_lines(c.cli("tail", env=from_env).stdout)[:1] == [(once[0], b"env-record")]
    # read-index.
    assert int(c.cli("read-index", env={"LOGSVC_ADDR": c.address("a")}).stdout) >= once[0]
    # A flag on the command line wins over the environment.
    st = json.loads(c.cli("status", "--addr", c.address("a"), env={"LOGSVC_ADDR": "x:1"}).stdout)
    assert st["header"]["nodeId"] == "a"


def test_cli_tail_follow_from_environment(shared_cluster: Cluster) -> None:
    """--follow is a flag like the others: LOGSVC_FOLLOW=1 must set it."""
    c = shared_cluster
    run_follow(c, [], env={"LOGSVC_ADDR": c.address("a"), "LOGSVC_FOLLOW": "1"})


def test_cli_reports_errors_with_exit_code(shared_cluster: Cluster) -> None:
    c = shared_cluster
    result = c.cli("tail", "--addr", c.address("a"), "--from", "0", check=False)
    assert result.returncode == 1
    assert b"INVALID_ARGUMENT" in result.stderr or b"from_index" in result.stderr
    missing = c.cli("status", check=False)
    assert missing.returncode == 2 and b"--addr" in missing.stderr


def test_serve_flags_from_environment_single_node(clusters: Clusters) -> None:
    """A one-node cluster whose every serve flag comes from LOGSVC_* variables."""
    c = clusters(
        ids=("solo",),
        extra_args=("--cluster-id", "from-env", "--record-bytes-max", "16", "--log-level", "DEBUG"),
        flags_in_env=True,
    )
    c.start_all()
    st = c.status("solo")
    assert (st.role, st.header.cluster_id, st.header.node_id) == ("leader", "from-env", "solo")
    assert st.zone == ""
    stub = c.stub("solo")
    failure = rpc_failure(
        lambda: stub.Append(log_pb2.AppendRequest(records=[b"x" * 17]), timeout=TIMEOUT_S)
    )
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    got = indexes(c.cli("append", "--addr", c.addr, "x" * 16).stdout)
    assert got == [1]
    assert b"DEBUG" in c.log_text("solo").encode()
    assert (c.nodes["solo"].data_dir / "solo" / "rocksdb").is_dir()


def test_cli_errors_are_messages_not_tracebacks(shared_cluster: Cluster) -> None:
    """A failed call prints `logsvc CMD: reason` and exits 1, like append and tail do."""
    c = shared_cluster
    (dead_port,) = free_ports(1)
    dead = f"127.0.0.1:{dead_port}"
    cases = {
        "status of a node that is down": ["status", "--addr", dead],
        "read-index of a node that is down": ["read-index", "--addr", dead, "--timeout-s", "2"],
        "read-index with no time to wait": ["read-index", "--addr", c.addr, "--timeout-s", "0"],
        "trim with nobody to ask": ["trim", "--addr", dead, "--before", "1"],
        "trim with a bad index": ["trim", "--addr", c.addr, "--before", "0"],
    }
    problems = []
    for what, args in cases.items():
        result = c.cli(*args, check=False, timeout=60)
        stderr = result.stderr.decode(errors="replace")
        if (
            result.returncode != 1
            or "Traceback" in stderr
            or not stderr.startswith(f"logsvc {args[0]}: ")
        ):
            errors = [line for line in stderr.splitlines() if "Error" in line] or [stderr[-200:]]
            traceback = "a traceback, " if "Traceback" in stderr else ""
            problems.append(f"{what}: exit {result.returncode}, {traceback}{errors[-1].strip()}")
    assert not problems, "\n".join(problems)


def test_logsvc_up_refuses_a_data_folder_in_use_and_a_taken_port(tmp_path: Path) -> None:
    """`logsvc up` (not only `memlog up`) refuses, with one line and exit status 2, before
    it starts anything: a data folder another run holds, and a port something listens on."""
    held = claim_data_folder(tmp_path / "held", "test")  # as a running `logsvc up` holds it
    try:
        done = subprocess.run(
            [*LOGSVC, "up", "--data", str(tmp_path / "held"), "--base-port", str(free_ports(1)[0])],
            capture_output=True, text=True, timeout=60, env=clean_env(),
        )  # fmt: skip
    finally:
        held.close()
    assert done.returncode == 2, done
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
    assert "is in use by another run" in done.stderr and "--data" in done.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*LOGSVC, "up", "--data", str(tmp_path / "free"), "--base-port", str(port)],
            capture_output=True, text=True, timeout=60, env=clean_env(),
        )  # fmt: skip
    assert done.returncode == 2, done
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
    assert f"port {port} on 127.0.0.1 is taken" in done.stderr and "--base-port" in done.stderr
