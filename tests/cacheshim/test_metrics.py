"""The shim's HTTP side port (issue 22): /metrics scraped during a workload moves, /livez and
/readyz answer 200 on a healthy, caught-up shim."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cacheshim.harness import Memlog, free_port, wait_until
from tests.cacheshim.rawresp import RawConnection as Raw


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Memlog, int]]:
    port = free_port()
    deployment = Memlog(
        Path(tmp_path_factory.mktemp("metered")), shim_args=["--metrics-port", str(port)]
    )
    try:
        deployment.start()
        yield deployment, port
    finally:
        deployment.stop()


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def sample(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name}{labels} not in the scrape"
    return float(match[1])


def test_metrics_move_under_a_workload(metered: tuple[Memlog, int]) -> None:
    deployment, port = metered
    conn = Raw(deployment.shim_ports[0])
    try:
        status, before = get(port, "/metrics")
        assert status == 200
        conn.send(*[["SET", f"k{i}", "v"] for i in range(20)])
        conn.replies(20)
        conn.send(*[["GET", f"k{i}"] for i in range(30)])  # 20 hits, 10 misses, fast path
        conn.replies(30)
        conn.call("LPUSH", "k1", "x")  # WRONGTYPE
    finally:
        conn.close()
    # (the fast reads are folded in every 100 ms)
    wait_until(
        lambda: '{command="get"} 30.0' in get(port, "/metrics")[1], 10, "the GETs in /metrics"
    )
    _, after = get(port, "/metrics")
    command = '{command="set"}'
    assert sample(after, "memlog_shim_commands_total", command) >= 20
    assert sample(after, "memlog_shim_commands_total", '{command="get"}') >= 30
    assert sample(after, "memlog_shim_command_failures_total", '{command="lpush"}') >= 1
    assert sample(after, "memlog_shim_error_replies_total", '{code="WRONGTYPE"}') >= 1
    assert (
        sample(after, "memlog_shim_keyspace_hits_total")
        - sample(before, "memlog_shim_keyspace_hits_total")
        >= 20
    )
    assert sample(after, "memlog_shim_command_duration_seconds_count", command) >= 20
    assert sample(after, "memlog_shim_applied_index") >= 20
    assert sample(after, "memlog_shim_resident_memory_bytes") > 0
    assert sample(after, "memlog_shim_clients") >= 0
    assert sample(after, "memlog_shim_connections_received_total") >= 1


def test_health(metered: tuple[Memlog, int]) -> None:
    _, port = metered
    assert get(port, "/livez") == (200, "ok\n")
    assert get(port, "/readyz") == (200, "ok\n")
    assert get(port, "/nothing")[0] == 404


def test_livez_fails_on_a_stalled_loop_or_a_dead_task() -> None:
    """(The checks alone, on a server of their own: no shim needed.)"""
    from cacheshim.observe.metrics import LOOP_STALL_S, ShimFacts, serve_metrics
    from cacheshim.serverstate import ServerStats

    stats = ServerStats()
    broken: list[str | None] = [None]
    facts = ShimFacts(
        stats=stats, shim_id="t", applied_index=lambda: 0, clients=lambda: 0,
        broken=lambda: broken[0], serving=lambda: True,
    )  # fmt: skip
    server = serve_metrics("127.0.0.1", 0, facts)
    port = server.server_address[1]
    try:
        assert get(port, "/livez")[0] == 200
        stats.loop_beat -= LOOP_STALL_S + 1
        status, text = get(port, "/livez")
        assert status == 503 and "event loop" in text
        assert get(port, "/readyz")[0] == 503
        stats.loop_beat += LOOP_STALL_S + 1
        broken[0] = "the shim's apply-loop task ended"
        assert get(port, "/livez") == (503, "the shim's apply-loop task ended\n")
    finally:
        server.shutdown()
        server.server_close()
