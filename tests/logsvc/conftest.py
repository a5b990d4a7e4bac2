"""Fixtures for the logsvc integration tests: clusters of real processes, always stopped."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Sequence
from pathlib import Path

import pytest

from logsvc.certs import ensure_local_credentials
from tests.logsvc.cluster import Cluster


class Clusters:
    """Makes clusters under one folder and stops them all (by PID) at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[Cluster] = []

    def __call__(
        self,
        ids: Sequence[str] = ("a", "b", "c"),
        extra_args: Sequence[str] = (),
        flags_in_env: bool = False,
        file_bytes_max: dict[str, int] | None = None,
        tls: bool = False,
    ) -> Cluster:
        root = self.root / f"cluster-{len(self.made)}"
        cluster = Cluster(
            root,
            tuple(ids),
            tuple(extra_args),
            flags_in_env,
            file_bytes_max=dict(file_bytes_max or {}),
            # memlog up's credentials: a throwaway CA, node, shim and admin certificates.
            tls=ensure_local_credentials(root / "tls", tuple(ids)) if tls else None,
        )
        self.made.append(cluster)
        return cluster

    def close(self) -> None:
        for cluster in self.made:
            cluster.close()

    def log_tails(self) -> str:
        return "".join(c.log_tails() for c in self.made)


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[Clusters]:
    """A factory of clusters (not started); every process is stopped at teardown."""
    made = Clusters(tmp_path)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def cluster(clusters: Clusters) -> Cluster:
    """A running three-node cluster (zones a, b, c) with an agreed leader."""
    c = clusters()
    c.start_all()
    return c


@pytest.fixture(scope="module")
def shared_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One running three-node cluster per module, for tests that only add records.

    Records are limited to 1 KiB, so that an oversized record is cheap to build.
    """
    made = Clusters(tmp_path_factory.mktemp("shared"))
    try:
        c = made(extra_args=("--record-bytes-max", "1024"))
        c.start_all()
        yield c
    finally:
        made.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, attach the tail of every node's log to the report."""
    report = yield
    if report.failed:
        funcargs: dict[str, object] = getattr(item, "funcargs", {})
        seen: dict[int, Cluster] = {}
        for value in funcargs.values():
            for c in value.made if isinstance(value, Clusters) else [value]:
                if isinstance(c, Cluster):
                    seen[id(c)] = c
        if seen:
            tails = "".join(c.log_tails() for c in seen.values())
            report.sections.append(("logsvc node logs (tail)", tails))
    return report
