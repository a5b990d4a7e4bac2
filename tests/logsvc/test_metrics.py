"""A log node's /metrics (logsvc/metrics.py): scraped over HTTP from real nodes while they
take appends, lose their leader and elect another; the numbers must move as the log does."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from logsvc.config import ConfigError, NodeConfig
from logsvc.v1 import log_pb2
from tests import metricnames
from tests.logsvc.cluster import free_ports, wait_until
from tests.logsvc.conftest import Clusters


def scrape(port: int) -> dict[str, float]:
    """`name{labels}` -> value, for every sample of one scrape."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_metrics_follow_appends_and_a_change_of_leader(clusters: Clusters) -> None:
    ports = dict(zip("abc", free_ports(3), strict=True))
    cluster = clusters()
    cluster.node_args = {n: ["--metrics-listen", f"127.0.0.1:{p}"] for n, p in ports.items()}
    leader = cluster.start_all()
    assert leader is not None
    before = {n: scrape(p) for n, p in ports.items()}
    assert [before[n]["memlog_log_is_leader"] for n in "abc"].count(1.0) == 1
    assert before[leader]["memlog_log_is_leader"] == 1.0
    assert before[leader]['memlog_log_role{role="leader"}'] == 1.0
    for node_id, samples in before.items():
        assert (
            samples[
                f'memlog_log_node_info{{cluster_id="memlog",node_id="{node_id}",zone="{node_id}"}}'
            ]
            == 1.0
        )
        assert samples["memlog_log_data_bytes"] > 0
        assert samples["memlog_log_filesystem_free_bytes"] > 0
        assert samples["process_resident_memory_bytes"] > 0

    # docs/monitoring.md lists exactly what a node exports (the alert rules and the
    # dashboard in deploy/ are checked against that list).
    exported = {metricnames.family(s.split("{")[0]) for s in before[leader]}
    assert {n for n in exported if n.startswith("memlog_log_")} == metricnames.documented(
        "memlog_log_"
    )

    stub = cluster.stub(leader)
    for i in range(20):
        stub.Append(log_pb2.AppendRequest(records=[f"r{i}-{j}".encode() for j in range(5)]))
    after = scrape(ports[leader])
    assert (
        after["memlog_log_appends_committed_total"]
        - before[leader].get("memlog_log_appends_committed_total", 0)
        == 20
    )
    assert (
        after["memlog_log_records_committed_total"]
        - before[leader].get("memlog_log_records_committed_total", 0)
        == 100
    )
    assert after["memlog_log_commit_duration_seconds_count"] >= 20
    assert (
        after['memlog_log_append_batch_records_bucket{le="4.0"}']
        < after['memlog_log_append_batch_records_bucket{le="8.0"}']
    )
    assert after["memlog_log_last_index"] >= 100
    assert after["memlog_log_records_retained"] >= 100
    followers = [n for n in "abc" if n != leader]
    for peer in followers:
        assert f'memlog_log_follower_lag_entries{{peer="{peer}"}}' in after
    for node_id in followers:
        # Followers sync what they receive: their sync histogram moves too.
        def synced_more(node_id: str = node_id) -> bool:
            now = scrape(ports[node_id])
            return (
                now["memlog_log_sync_duration_seconds_count"]
                > before[node_id]["memlog_log_sync_duration_seconds_count"]
                and now["memlog_log_raft_commit_index"] >= after["memlog_log_raft_commit_index"]
            )

        wait_until(synced_more, 30, f"{node_id} syncs and learns the commit index")

    changes = {n: scrape(ports[n])["memlog_log_leader_changes_total"] for n in followers}
    cluster.kill(leader)
    new = cluster.new_leader(leader)
    wait_until(
        lambda: scrape(ports[new])["memlog_log_is_leader"] == 1.0, 30, "the new leader says so"
    )
    for node_id in followers:

        def counted(node_id: str = node_id) -> bool:
            return scrape(ports[node_id])["memlog_log_leader_changes_total"] > changes[node_id]

        wait_until(counted, 30, f"{node_id} counts the change of leader")
    assert scrape(ports[new])["memlog_log_term"] > before[new]["memlog_log_term"]


def test_metrics_port_answers_only_metrics(clusters: Clusters) -> None:
    (port,) = free_ports(1)
    cluster = clusters(ids=("a",))
    cluster.node_args = {"a": ["--metrics-listen", f"127.0.0.1:{port}"]}
    cluster.start_all()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/other", timeout=5)
    assert refused.value.code == 404
    assert scrape(port)["memlog_log_is_leader"] == 1.0


@pytest.mark.parametrize("listen", ["7005", "localhost", ":7005", "host:port", "h:70000"])
def test_a_bad_metrics_address_is_refused(tmp_path: Path, listen: str) -> None:
    config = NodeConfig(
        id="a", listen="127.0.0.1:1", peers={"a": "127.0.0.1:1"}, data_dir=tmp_path,
        metrics_listen=listen,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="--metrics-listen"):
        config.validate()
