"""MULTI/EXEC and WATCH (issue 14, findings 9 and 11) against a real deployment, beside a
redis-server 7.0 whose DEBUG command is enabled (to switch its active expiry off where a
test needs a key that has expired but is not removed yet).

Each scenario runs the same steps, on two connections (a watcher and another client), on
both servers, and the reply bytes must be equal. Every scenario whose transaction only reads
(EXEC served from the shim's memory) runs again with one that writes (EXEC applied from the
log), since memlog checks the WATCH in two places.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import pytest

from tests.cacheshim.harness import Memlog, RedisServer
from tests.cacheshim.rawresp import RawConnection

Step = tuple[str, Sequence[bytes | str | int]] | float  # ("a" | "b", command), or a pause (s)

READ_BODY: list[Step] = [("a", ["MULTI"]), ("a", ["PING"]), ("a", ["EXEC"])]
WRITE_BODY: list[Step] = [("a", ["MULTI"]), ("a", ["INCR", "n"]), ("a", ["EXEC"])]


@pytest.fixture(scope="module")
def oracle_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis-oracle-debug"))
    try:
        server.start(["--enable-debug-command", "yes"])
        yield server
    finally:
        server.stop()


class Servers:
    def __init__(self, oracle_port: int, memlog_port: int) -> None:
        self.ports = {"redis-server": oracle_port, "memlog": memlog_port}

    def run(self, steps: Sequence[Step], active_expire: bool = True) -> dict[str, list[bytes]]:
        """Run steps on both servers (each from an empty keyspace); the replies of each."""
        replies: dict[str, list[bytes]] = {}
        for name, port in self.ports.items():
            a, b = RawConnection(port), RawConnection(port)
            try:
                a.call("FLUSHALL")
                if name == "redis-server":
                    a.call("DEBUG", "SET-ACTIVE-EXPIRE", 1 if active_expire else 0)
                out: list[bytes] = []
                for step in steps:
                    if isinstance(step, float):
                        time.sleep(step)
                        continue
                    who, args = step
                    out.append((a if who == "a" else b).call(*args))
                replies[name] = out
            finally:
                if name == "redis-server":
                    a.call("DEBUG", "SET-ACTIVE-EXPIRE", 1)
                a.close()
                b.close()
        return replies

    def same(self, steps: Sequence[Step], active_expire: bool = True) -> list[bytes]:
        replies = self.run(steps, active_expire)
        want, got = replies["redis-server"], replies["memlog"]
        assert got == want, f"{steps!r}:\nredis-server: {want!r}\nmemlog:       {got!r}"
        return got


@pytest.fixture
def servers(oracle_server: RedisServer, memlog: Memlog) -> Servers:
    return Servers(oracle_server.port, memlog.shim_ports[0])


def _both_bodies(servers: Servers, before: list[Step], active_expire: bool = True) -> None:
    for body in (READ_BODY, WRITE_BODY):
        servers.same(before + body, active_expire)


# -- finding 9 --------------------------------------------------------------------------------


def test_discard_forgets_the_watched_keys(servers: Servers) -> None:
    got = servers.same(
        [("a", ["WATCH", "x"]), ("b", ["SET", "x", "10"]), ("a", ["MULTI"]), ("a", ["DISCARD"]),
         ("a", ["MULTI"]), ("a", ["INCR", "x"]), ("a", ["EXEC"])]
    )  # fmt: skip
    assert got[-1] == b"*1\r\n:11\r\n"
    # Redis's "DISCARD should UNWATCH all the keys": a change after the DISCARD counts neither
    servers.same(
        [("a", ["WATCH", "x"]), ("b", ["SET", "x", "10"]), ("a", ["MULTI"]), ("a", ["DISCARD"]),
         ("b", ["SET", "x", "10"]), ("a", ["MULTI"]), ("a", ["INCR", "x"]), ("a", ["EXEC"])]
    )  # fmt: skip


def test_a_flush_aborts_only_watches_of_keys_that_existed(servers: Servers) -> None:
    for flush in (["FLUSHALL"], ["FLUSHDB"]):
        # a key that does not exist: the flush changes nothing of it
        _both_bodies(servers, [("a", ["WATCH", "x"]), ("b", flush)])
        # one that exists: it is removed, a change
        _both_bodies(servers, [("b", ["SET", "x", "1"]), ("a", ["WATCH", "x"]), ("b", flush)])
        # one created and deleted again before the flush: changed all the same
        _both_bodies(
            servers,
            [("a", ["WATCH", "x"]), ("b", ["SET", "x", "1"]), ("b", ["DEL", "x"]), ("b", flush)],
        )
    # FLUSHDB of another database leaves this one's keys alone
    _both_bodies(
        servers,
        [("b", ["SET", "x", "1"]), ("a", ["WATCH", "x"]), ("b", ["SELECT", "1"]),
         ("b", ["SET", "x", "2"]), ("b", ["FLUSHDB"])],
    )  # fmt: skip
    got = servers.run([("a", ["WATCH", "x"]), ("b", ["FLUSHALL"]), *READ_BODY])["memlog"]
    assert got[-1] == b"*1\r\n+PONG\r\n"


def test_each_watch_counts_from_its_own_moment(servers: Servers) -> None:
    # a key changed before its own WATCH, after an earlier WATCH of another key: not a change
    _both_bodies(servers, [("a", ["WATCH", "y"]), ("b", ["SET", "x", "1"]), ("a", ["WATCH", "x"])])
    # a change between the first WATCH and a second one: a change
    _both_bodies(servers, [("a", ["WATCH", "x"]), ("b", ["SET", "x", "1"]), ("a", ["WATCH", "y"])])
    # watching a key again keeps its first moment
    _both_bodies(servers, [("a", ["WATCH", "x"]), ("b", ["SET", "x", "1"]), ("a", ["WATCH", "x"])])
    # the key's database is the one selected at its WATCH
    _both_bodies(
        servers,
        [("a", ["SELECT", "5"]), ("a", ["SET", "x", "30"]), ("a", ["WATCH", "x"]),
         ("b", ["SELECT", "1"]), ("b", ["SET", "x", "10"]), ("a", ["SELECT", "0"])],
    )  # fmt: skip


def test_a_watched_key_that_expires_aborts_exec(servers: Servers) -> None:
    # live when watched, expired at EXEC: removed or not (active expiry on or off), a change.
    # (The time to live outlasts a commit through the log on a loaded machine, so that the key
    # is still live when WATCH comes, as on redis-server.)
    for active_expire in (True, False):
        _both_bodies(
            servers,
            [("b", ["SET", "x", "1", "PX", "1500"]), ("a", ["WATCH", "x"]), 1.7],
            active_expire,
        )
    # "WATCH will consider touched keys target of EXPIRE"
    _both_bodies(
        servers, [("b", ["SET", "x", "1"]), ("a", ["WATCH", "x"]), ("b", ["EXPIRE", "x", "10"])]
    )
    # an expiry still in the future: no change
    _both_bodies(servers, [("b", ["SET", "x", "1", "PX", "60000"]), ("a", ["WATCH", "x"])])


@pytest.mark.parametrize(
    "after",
    [[], [["SET", "x", "bar"]], [["DEL", "x"]], [["DEL", "x"], ["SET", "x", "2"]],
     [["GET", "x"], ["SET", "x", "2"], ["DEL", "x"]], [["FLUSHDB"]],
     [["FLUSHDB"], ["SET", "x", "3"]], [["INCR", "x"]], [["EXISTS", "x"]],
     [["EXPIRE", "x", "100"]], [["RPUSH", "x", "a"]]],
    ids=repr,
)  # fmt: skip
def test_watching_a_key_that_expired_but_is_not_removed(
    servers: Servers, after: list[list[str]]
) -> None:
    """Redis 7.0: the removal of a key that had expired when it was watched is no change;
    anything done to the key after it is one."""
    before: list[Step] = [("b", ["SET", "x", "1", "PX", "1"]), 0.05, ("a", ["WATCH", "x"])]
    _both_bodies(servers, before + [("b", args) for args in after], active_expire=False)


# -- finding 11: EXEC and the central checks ---------------------------------------------------


def test_exec_with_arguments_aborts_and_discards(servers: Servers) -> None:
    got = servers.same(
        [("a", ["MULTI"]), ("a", ["SET", "a", "1"]), ("a", ["EXEC", "x"]), ("a", ["EXEC"]),
         ("a", ["GET", "a"])]
    )  # fmt: skip
    assert got[2].startswith(b"-EXECABORT Transaction discarded because of: wrong number")
    servers.same([("a", ["EXEC", "1", "2"]), ("a", ["MULTI"]), ("a", ["EXEC"])])
    servers.same([("a", ["MULTI"]), ("a", ["NOSUCH"]), ("a", ["EXEC", "1"]), ("a", ["EXEC"])])
    # the aborted EXEC forgets the WATCHes too
    servers.same(
        [("a", ["WATCH", "x"]), ("a", ["MULTI"]), ("a", ["EXEC", "1"]), ("b", ["SET", "x", "1"]),
         *WRITE_BODY]
    )  # fmt: skip


@pytest.mark.parametrize(
    "refused", [["DISCARD", "x"], ["WATCH"], ["MULTI", "x"], ["RESET", "x"], ["UNWATCH", "x"]]
)
def test_a_refused_connection_command_fails_the_transaction(
    servers: Servers, refused: list[str]
) -> None:
    servers.same([("a", ["MULTI"]), ("a", refused), ("a", ["SET", "a", "1"]), ("a", ["EXEC"]),
                  ("a", ["GET", "a"])])  # fmt: skip
    # errors from the command itself do not (nested MULTI, WATCH inside MULTI)
    servers.same([("a", ["MULTI"]), ("a", ["MULTI"]), ("a", ["WATCH", "x"]),
                  ("a", ["SET", "a", "1"]), ("a", ["EXEC"])])  # fmt: skip
