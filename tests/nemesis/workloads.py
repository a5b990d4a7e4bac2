"""Client threads of the nemesis run, through redis-py, one connection each, bound to one
shim. Every command becomes an Op (tests/nemesis/history.py) with its times and fate.

redis-py's default retries (three, on a connection error or a timeout) are turned off: a
retried RPUSH that had reached the shim before the connection broke would append twice and
be blamed on memlog. After any connection error the client is made anew (and, for the
linearizable readers, `MEMLOG READS LINEARIZABLE` sent again: the mode is per connection).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.nemesis.history import Op, Outcome, op

CLIENT_TIMEOUT_S = 8.0  # above the shims' --write-timeout-s (5 s)
BIG_BYTES = 1 << 20


@dataclass
class Control:
    """What the nemesis tells the clients: the phase (it names the keys) and whether 1 MB
    writes run; and where the clients write their history."""

    stop: threading.Event = field(default_factory=threading.Event)
    # (phase, 1 MB writes on), set as one value so that no client sees half a change.
    mode: tuple[int, bool] = (0, False)
    history: list[Op] = field(default_factory=list)  # list.append is atomic in CPython
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, o: Op) -> None:
        self.history.append(o)


def connect(port: int, linearizable: bool = False) -> redis.Redis:
    conn = redis.Redis(
        port=port,
        protocol=2,
        socket_timeout=CLIENT_TIMEOUT_S,
        socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), 0),
        single_connection_client=True,
    )
    try:
        if linearizable:
            conn.execute_command("MEMLOG", "READS", "LINEARIZABLE")  # type: ignore[no-untyped-call]
        else:
            conn.ping()
    except BaseException:
        conn.close()
        raise
    return conn


def write_fate(exc: redis.RedisError) -> Outcome:
    """What a write that got this error may have done. The shim says "it was not applied"
    or "nothing of it was applied" when it knows; LOADING comes before anything is sent.
    Everything else (a timeout, a dropped connection, "outcome unknown", an error we do not
    know) may have happened."""
    text = str(exc)
    if isinstance(exc, redis.exceptions.BusyLoadingError):
        return Outcome.FAIL
    if "not applied and will not be" in text or "nothing of it was applied" in text:
        return Outcome.FAIL
    return Outcome.INFO


def big_value(ident: str) -> bytes:
    """1 MiB whose every byte follows from its id (the first 64 bytes): checkable alone."""
    head = ident.encode().ljust(64, b" ")
    block = hashlib.sha256(head).digest()
    body = block * ((BIG_BYTES - 64) // len(block) + 1)
    return head + body[: BIG_BYTES - 64]


def big_ident(value: bytes) -> str | None:
    """The id of a value made by big_value, or None when it is not one (corrupt)."""
    if len(value) != BIG_BYTES:
        return None
    ident = value[:64].decode(errors="replace").rstrip(" ")
    return ident if big_value(ident) == value else None


class Client(threading.Thread):
    """One client: a loop of commands until the run stops, with a think time between them."""

    workload = ""
    linearizable = False

    def __init__(self, name: str, shim: int, port: int, seed: int, ctl: Control) -> None:
        super().__init__(name=name, daemon=True)
        self.shim, self.port, self.ctl = shim, port, ctl
        self.rng = random.Random(seed)
        self.conn: redis.Redis | None = None
        self.n = 0
        self.errors: dict[str, int] = {}

    def run(self) -> None:
        while not self.ctl.stop.is_set():
            if self.conn is None:
                try:
                    self.conn = connect(self.port, self.linearizable)
                except redis.RedisError as exc:
                    self._note(exc)
                    self.ctl.stop.wait(0.1)
                    continue
            self.step(self.conn)
            self.ctl.stop.wait(self.think())
        if self.conn is not None:
            self.conn.close()

    def think(self) -> float:
        return self.rng.uniform(0.005, 0.02)

    def step(self, conn: redis.Redis) -> None:
        raise NotImplementedError

    def key(self, name: str) -> str:
        return f"p{self.ctl.mode[0]}:{name}"

    def unique(self) -> str:
        self.n += 1
        return f"{self.name}-{self.n}"

    def call(
        self,
        kind: str,
        key: str,
        value: object,
        args: tuple[object, ...],
        reply_value: Callable[[object], object] | None = None,
    ) -> tuple[Op, object]:
        """Run one command and record it: a write's value is what it sent, a read's what it
        got (reply_value turns the reply into it)."""
        assert self.conn is not None
        phase = int(key.partition(":")[0][1:])  # the phase that named the key
        started = time.monotonic()
        try:
            reply = self.conn.execute_command(*args)  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            ended = time.monotonic()
            self._note(exc)
            fate = write_fate(exc) if kind != "read" else Outcome.FAIL
            failed = op(self.name, kind, key, value, started, ended, fate, shim=self.shim,
                        phase=phase, error=str(exc)[:200])  # fmt: skip
            self.ctl.record(failed)
            if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                self.conn.close()
                self.conn = None
            return failed, None
        ended = time.monotonic()
        got = reply_value(reply) if reply_value is not None else value
        done = op(self.name, kind, key, got, started, ended, Outcome.OK, shim=self.shim,
                  phase=phase)  # fmt: skip
        self.ctl.record(done)
        return done, reply

    def _note(self, exc: BaseException) -> None:
        text = type(exc).__name__ + ": " + str(exc)[:80]
        self.errors[text] = self.errors.get(text, 0) + 1


def _text(reply: object) -> object:
    return reply.decode() if isinstance(reply, bytes) else reply


class ListAppender(Client):
    """RPUSH of unique values to one of three lists; now and then an LRANGE (a local read)."""

    workload = "list-append"

    def step(self, conn: redis.Redis) -> None:
        key = self.key(f"list:{self.rng.randrange(3)}")
        if self.rng.random() < 0.8:
            value = self.unique()
            self.call("append", key, value, ("RPUSH", key, value))
        else:
            self.call("read", key, None, ("LRANGE", key, 0, -1),
                      lambda r: [_text(v) for v in r])  # type: ignore[attr-defined]  # fmt: skip


class Counter(Client):
    """INCRBY 1..5 of one counter (its reply recorded as a read too), and GETs."""

    workload = "counter"

    def step(self, conn: redis.Redis) -> None:
        key = self.key("counter")
        if self.rng.random() < 0.7:
            delta = self.rng.randint(1, 5)
            done, reply = self.call("incr", key, delta, ("INCRBY", key, delta))
            if done.ok:
                self.ctl.record(op(self.name, "read", key, int(reply), done.invoke,  # type: ignore[call-overload]
                                   done.complete, shim=self.shim, phase=done.phase,
                                   derived=True))  # fmt: skip
        else:
            self.call("read", key, None, ("GET", key), lambda r: None if r is None else int(r))  # type: ignore[call-overload]


class RegisterWriter(Client):
    """SET of unique values to one of two registers."""

    workload = "register"

    def step(self, conn: redis.Redis) -> None:
        key = self.key(f"reg:{self.rng.randrange(2)}")
        value = self.unique()
        self.call("write", key, value, ("SET", key, value))


class RegisterReader(Client):
    """GETs of the registers on a `MEMLOG READS LINEARIZABLE` connection."""

    workload = "register"
    linearizable = True

    def think(self) -> float:
        return self.rng.uniform(0.002, 0.01)

    def step(self, conn: redis.Redis) -> None:
        key = self.key(f"reg:{self.rng.randrange(2)}")
        self.call("read", key, None, ("GET", key), _text)


class BigWriter(Client):
    """SET of 1 MiB values (two keys a phase) while the phase asks for big values."""

    workload = "1mb-register"

    def think(self) -> float:
        return self.rng.uniform(0.15, 0.35)

    def step(self, conn: redis.Redis) -> None:
        phase, big = self.ctl.mode
        if not big:
            return
        key = f"p{phase}:big:{self.rng.randrange(2)}"
        ident = self.unique()
        self.call("write", key, ident, ("SET", key, big_value(ident)))


CLIENTS: tuple[type[Client], ...] = (
    ListAppender,
    Counter,
    RegisterWriter,
    RegisterReader,
    BigWriter,
)
WORKLOADS = ("list-append", "counter", "register", "1mb-register")
