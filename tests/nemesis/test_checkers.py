"""Each checker of the nemesis suite catches a hand-made bad history and passes its good twin
(no processes: milliseconds)."""

from __future__ import annotations

import random
import time

import pytest
import redis

from tests.nemesis.checkers import (
    check_counter,
    check_list_append,
    check_registers,
    linearizable_register,
    longest_gap,
)
from tests.nemesis.history import Op, Outcome, op
from tests.nemesis.runner import Final, Phase, Row, RunResult, check
from tests.nemesis.workloads import (
    Client,
    Control,
    Counter,
    ListAppender,
    RegisterReader,
    RegisterWriter,
    big_ident,
    big_value,
    write_fate,
)

OK, FAIL, INFO = Outcome.OK, Outcome.FAIL, Outcome.INFO


def appends() -> list[Op]:
    """Client p1 appends a then b (sequentially), p2 appends c concurrently with both, p3's
    d has an unknown outcome and p4's e was refused."""
    return [
        op("p1", "append", "k", "a", 0.0, 1.0),
        op("p1", "append", "k", "b", 1.1, 2.0),
        op("p2", "append", "k", "c", 0.5, 1.5),
        op("p3", "append", "k", "d", 0.2, None, INFO),
        op("p4", "append", "k", "e", 0.3, 0.4, FAIL, error="not applied"),
        op("p5", "read", "k", ["a", "c"], 1.6, 1.7),
    ]


def test_list_append_passes_a_good_history() -> None:
    for final in (["a", "c", "b"], ["a", "c", "d", "b"], ["a", "c", "b", "d"]):
        result = check_list_append(appends(), {"k": final})
        assert result.valid, (final, result)


def test_list_append_finds_a_lost_value() -> None:
    result = check_list_append(appends(), {"k": ["a", "c"]})
    assert len(result.lost) == 1 and "b" in result.lost[0]
    assert not (result.duplicates or result.phantoms or result.reordered)


def test_list_append_finds_a_duplicate() -> None:
    result = check_list_append(appends(), {"k": ["a", "c", "b", "c"]})
    assert result.duplicates == ["k: c x2"] and not result.lost


def test_list_append_finds_phantoms_never_sent_and_refused() -> None:
    result = check_list_append(appends(), {"k": ["a", "c", "zz", "b", "e"]})
    assert len(result.phantoms) == 2
    assert "zz was never sent" in result.phantoms[0] and "e was refused" in result.phantoms[1]


def test_list_append_finds_values_out_of_real_time_order() -> None:
    # b was sent (1.1) after a was acknowledged (1.0): b before a is impossible.
    result = check_list_append(appends()[:-1], {"k": ["b", "a", "c"]})
    assert len(result.reordered) == 1 and "b (sent at 1.100) comes before a" in result.reordered[0]
    assert not result.lost


def test_list_append_finds_a_read_that_is_not_a_prefix() -> None:
    history = [*appends()[:-1], op("p5", "read", "k", ["c", "a"], 1.6, 1.7)]
    result = check_list_append(history, {"k": ["a", "c", "b"]})
    assert len(result.reordered) == 1 and "not a prefix" in result.reordered[0]


def counter_ops() -> list[Op]:
    return [
        op("p1", "incr", "n", 2, 0.0, 1.0),
        op("p1", "read", "n", 2, 0.0, 1.0),  # the INCRBY's reply
        op("p2", "incr", "n", 3, 0.5, None, INFO),
        op("p3", "incr", "n", 7, 0.6, 0.9, FAIL),
        op("p1", "incr", "n", 4, 1.1, 2.0),
        op("p1", "read", "n", 6, 1.1, 2.0),
    ]


@pytest.mark.parametrize("final", [6, 9])
def test_counter_passes_a_final_value_within_bounds(final: int) -> None:
    assert check_counter(counter_ops(), "n", final).valid


@pytest.mark.parametrize(("final", "why"), [(5, "lost"), (10, "phantom"), (13, "refused")])
def test_counter_finds_a_final_value_out_of_bounds(final: int, why: str) -> None:
    result = check_counter(counter_ops(), "n", final)
    assert len(result.violations) == 1 and "outside [6, 9]" in result.violations[0], why


def test_counter_finds_a_read_above_what_was_sent() -> None:
    history = [*counter_ops(), op("p4", "read", "n", 9, 0.6, 0.7)]  # 2 + 3 sent by 0.7
    result = check_counter(history, "n", 6)
    assert len(result.violations) == 1 and "at most 5" in result.violations[0]


def test_counter_finds_a_connection_that_sees_it_go_down() -> None:
    history = [*counter_ops(), op("p1", "read", "n", 2, 2.1, 2.2)]  # after its own 6
    result = check_counter(history, "n", 6)
    assert len(result.violations) == 1 and "after it had seen 6" in result.violations[0]


def registers() -> list[Op]:
    return [
        op("w1", "write", "r", "x", 0.0, 1.0),
        op("r1", "read", "r", None, 0.1, 0.2),  # before x took effect
        op("r1", "read", "r", "x", 0.5, 0.6),  # x may have taken effect at 0.5
        op("w2", "write", "r", "y", 1.5, 2.0),
        op("r2", "read", "r", "x", 1.6, 1.7),  # y concurrent: x still fine
        op("r2", "read", "r", "y", 2.1, 2.2),
        op("w3", "write", "r", "z", 2.3, None, INFO),  # unknown: never, or any time after
        op("r1", "read", "r", "y", 2.5, 2.6),
        op("w4", "write", "r", "q", 2.4, 2.45, FAIL),
        op("r3", "read", "r", None, 2.5, 2.6, FAIL),  # failed reads say nothing
    ]


def test_register_passes_a_linearizable_history() -> None:
    result = check_registers(registers())
    assert result.valid and not result.unchecked and result.ops == 8


def test_register_passes_an_unknown_write_that_took_effect_late() -> None:
    history = [
        *registers(),
        op("r1", "read", "r", "z", 9.0, 9.1),
        op("r2", "read", "r", "z", 9.2, 9.3),
    ]
    assert check_registers(history).valid


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (op("r4", "read", "r", "x", 2.1, 2.2), "stale: y was acknowledged before the read began"),
        (op("r4", "read", "r", "q", 3.0, 3.1), "a refused write's value"),
        (op("r4", "read", "r", "never", 3.0, 3.1), "a value nobody wrote"),
        (op("r4", "read", "r", None, 1.2, 1.3), "the key missing after x was acknowledged"),
    ],
)
def test_register_finds_a_read_no_linearization_explains(bad: Op, why: str) -> None:
    result = check_registers([*registers(), bad])
    assert len(result.violations) == 1, why
    assert result.violations[0].startswith("r: no linearization of 9 ops")


def test_register_finds_a_value_that_comes_back() -> None:
    # z (unknown) then y again: once a read saw z, y cannot come back (y was written once).
    history = [
        *registers(),
        op("r1", "read", "r", "z", 3.0, 3.1),
        op("r2", "read", "r", "y", 3.2, 3.3),
    ]
    assert not check_registers(history).valid


def test_register_keys_are_checked_apart_and_history_size_is_bounded() -> None:
    other = [op("w9", "write", "s", "x", 0.0, 1.0), op("r9", "read", "s", "x", 1.1, 1.2)]
    result = check_registers([*registers(), *other], max_ops=5)
    assert result.valid and len(result.unchecked) == 1 and result.unchecked[0].startswith("r:")


def test_register_search_is_quick_on_a_long_concurrent_history() -> None:
    """A seeded random history of a real register (each op takes effect at a random point
    inside its interval): always linearizable; 1,500 ops checked in well under a second."""
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    history: list[Op] = []
    value: object = None
    now = 0.0
    points = []
    for i in range(1500):
        start = now + rng.random() * 0.01
        end = start + rng.random() * 0.05
        points.append((start + rng.random() * (end - start), i, start, end))
        now = start
    for _, i, start, end in sorted(points):
        if rng.random() < 0.4:
            value = f"v{i}"
            history.append(op(f"p{i % 5}", "write", "r", value, start, end))
        else:
            history.append(op(f"p{i % 5}", "read", "r", value, start, end))
    began = time.monotonic()
    assert linearizable_register(history, None, 2_000_000) is True
    took = time.monotonic() - began
    print(f"1500 ops in {took:.3f}s")
    # And with one read made stale: a value from long before.
    stale = next(i for i in range(1000, 1500) if history[i].kind == "read" and history[i].value)
    o = history[stale]
    early = next(h.value for h in history if h.kind == "write")
    history[stale] = op(o.process, "read", "r", early, o.invoke, o.complete)
    assert linearizable_register(history, None, 2_000_000) is False


def test_longest_gap_skips_excluded_time() -> None:
    assert longest_gap([1.0, 2.0, 6.0], 0.0, 7.0) == 4.0
    assert longest_gap([1.0, 2.0, 6.0], 0.0, 7.0, [(2.5, 5.5)]) == pytest.approx(1.0)
    assert longest_gap([], 0.0, 3.0, [(1.0, 2.0)]) == 1.0
    assert longest_gap([], 0.0, 3.0, [(-1.0, 4.0)]) == 0.0


# -- the run's bookkeeping: rows, gaps and verdicts from a history (no processes) ----------


def _run_check(lists: dict[str, list[str]], reg_read: object) -> tuple[RunResult, list[Row]]:
    ctl = Control()
    clients: list[Client] = [cls(f"{cls.__name__.lower()}{s}", s, 0, 1, ctl) for s in (0, 1)
               for cls in (ListAppender, Counter, RegisterWriter, RegisterReader)]  # fmt: skip
    phase = Phase(1, "kill-leader", "small", start=10.0, healed=12.0, end=14.0)
    history = [
        op("listappender0", "append", "p1:list:0", "a", 10.1, 10.2, shim=0, phase=1),
        op("listappender0", "append", "p1:list:0", "b", 13.0, 13.1, shim=0, phase=1),
        op("listappender1", "append", "p1:list:1", "c", 10.5, 10.6, shim=1, phase=1),
        op("listappender1", "append", "p1:list:1", "d", 13.5, 13.9, shim=1, phase=1),
        op("counter0", "incr", "p1:counter", 3, 10.0, 10.1, shim=0, phase=1),
        op("counter1", "incr", "p1:counter", 2, 11.0, None, INFO, shim=1, phase=1),
        op("registerwriter0", "write", "p1:reg:0", "x", 10.0, 10.1, shim=0, phase=1),
        op("registerreader0", "read", "p1:reg:0", "x", 10.2, 10.3, shim=0, phase=1),
        op("registerreader1", "read", "p1:reg:0", "x", 13.6, 13.7, shim=1, phase=1),
    ]
    final = Final(lists=lists, counters={"p1:counter": 5})
    final.reads.append(op("final", "read", "p1:reg:0", reg_read, 20.0, 20.1, phase=1))
    result = RunResult(seed=1, profile="test")
    check(result, [phase], history, clients, final)
    return result, result.rows


def test_the_run_turns_a_good_history_into_rows_and_gaps() -> None:
    result, rows = _run_check({"p1:list:0": ["a", "b"], "p1:list:1": ["c", "d"]}, "x")
    assert not result.violations, result.violations
    by = {r.workload: r for r in rows}
    assert (by["list-append"].ok, by["list-append"].lost, by["list-append"].dup) == (4, "0", "0")
    # Shim 1's appends, acknowledged at 10.6 and 13.9, leave the longer stretch (shim 0's:
    # 10.2 and 13.1, then the phase ends at 14.0).
    assert by["list-append"].write_gap == pytest.approx(3.3)
    assert by["list-append"].where["write"].startswith("shim 1, from +0.6s")
    assert by["counter"].unknown == 1
    # Linearizable reads: shim 1's only read at 13.7 (3.7 s after the fault began).
    assert by["register"].read_gap == pytest.approx(3.7)
    assert by["counter"].write_gap == pytest.approx(3.9)  # shim 1's only INCRBY: unknown
    assert len(result.misses) == 4  # a kill-leader phase: 3 s is the target


def test_the_run_reports_a_lost_append_and_a_stale_register() -> None:
    result, rows = _run_check({"p1:list:0": ["a"], "p1:list:1": ["c", "d"]}, None)
    by = {r.workload: r for r in rows}
    assert by["list-append"].lost == "1" and by["register"].other == "1"
    assert any("lost: p1:list:0: b" in v for v in result.violations), result.violations
    assert any("not linearizable" in v for v in result.violations), result.violations


def test_write_fates_and_big_values() -> None:
    not_applied = redis.ResponseError("ERR memlog: ...; it was not applied and will not be")
    assert write_fate(not_applied) is FAIL
    assert write_fate(redis.ResponseError("ERR memlog: ...; its outcome is unknown")) is INFO
    assert write_fate(redis.exceptions.BusyLoadingError("LOADING")) is FAIL
    assert write_fate(redis.TimeoutError("Timeout reading from socket")) is INFO
    value = big_value("bigwriter0-7")
    assert len(value) == 1 << 20 and big_ident(value) == "bigwriter0-7"
    assert big_ident(value[:-1] + b"!") is None
