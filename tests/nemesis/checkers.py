"""Checkers of client histories (tests/nemesis/history.py). Each returns a result that lists
what it found; an empty list is a pass. Proven on hand-made bad histories in
tests/nemesis/test_checkers.py.

- list-append: RPUSH of unique values; the lists read at the end (and LRANGEs during the run)
  must hold every acknowledged value, none twice, none never sent or certainly refused, in an
  order that respects real time (a value acknowledged before another was sent comes first),
  and every read is a prefix of the final list (lists only grow).
- counter: INCRBY of positive deltas; the final value lies between the sum of acknowledged
  deltas and that plus the sum of unknown ones; no read or reply exceeds what was sent by
  then; one connection never sees the counter go down.
- register: SET of unique values and linearizable GETs, checked by the search of Wing & Gong
  as improved by Lowe ("Testing for linearizability", 2016): linearize one call at a time,
  backtrack at a return whose call is not linearized yet, and remember every (set of
  linearized calls, register value) already tried. A call of unknown outcome returns at
  infinity (it may take effect any time after it was sent, or never: never is the same as
  last). Registers are independent, so each key is searched alone.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tests.nemesis.history import Op, Outcome

# -- list-append -----------------------------------------------------------------------------


@dataclass
class ListResult:
    lost: list[str] = field(default_factory=list)  # acknowledged, not in the final list
    duplicates: list[str] = field(default_factory=list)  # in a list more than once
    phantoms: list[str] = field(default_factory=list)  # never sent, or certainly refused
    reordered: list[str] = field(default_factory=list)  # real-time order broken, bad reads

    @property
    def valid(self) -> bool:
        return not (self.lost or self.duplicates or self.phantoms or self.reordered)


def check_list_append(ops: Iterable[Op], final: dict[str, list[str]]) -> ListResult:
    """ops: "append" (value: the str appended) and "read" (value: the list of str read) ops;
    final: each key's list read once every client stopped (a missing key: no list)."""
    result = ListResult()
    appends: dict[str, dict[str, Op]] = defaultdict(dict)
    reads: dict[str, list[Op]] = defaultdict(list)
    for o in ops:
        if o.kind == "append":
            assert isinstance(o.value, str)
            assert o.value not in appends[o.key], f"value {o.value} sent twice: not unique"
            appends[o.key][o.value] = o
        elif o.kind == "read" and o.ok:
            reads[o.key].append(o)
    for key in sorted(set(appends) | set(final) | set(reads)):
        sent = appends.get(key, {})
        values = final.get(key, [])
        counts = Counter(values)
        result.duplicates += [f"{key}: {v} x{n}" for v, n in sorted(counts.items()) if n > 1]
        for v in counts:
            w = sent.get(v)
            if w is None:
                result.phantoms.append(f"{key}: {v} was never sent")
            elif w.outcome is Outcome.FAIL:
                result.phantoms.append(f"{key}: {v} was refused ({w.error}) yet is there")
        result.lost += [
            f"{key}: {v} acknowledged at {w.complete:.3f}"
            for v, w in sorted(sent.items())
            if w.ok and v not in counts
        ]
        result.reordered += _real_time_order(key, values, sent)
        for r in reads.get(key, []):
            assert isinstance(r.value, list)
            seen: list[str] = r.value
            if seen != values[: len(seen)]:
                at = next(
                    (i for i, (a, b) in enumerate(zip(seen, values, strict=False)) if a != b),
                    min(len(seen), len(values)),
                )
                result.reordered.append(
                    f"{key}: a read of {len(seen)} values is not a prefix of the final "
                    f"{len(values)} (they differ at position {at})"
                )
    return result


def _real_time_order(key: str, values: Sequence[str], sent: dict[str, Op]) -> list[str]:
    """Values in the list whose order contradicts real time: b placed before a, though a
    was acknowledged before b was sent. One pass from the end keeps the earliest
    acknowledgement among the values placed after each position."""
    out: list[str] = []
    earliest_after = math.inf
    earliest_value = ""
    for v in reversed(values):
        w = sent.get(v)
        if w is None:
            continue
        if earliest_after < w.invoke:
            out.append(
                f"{key}: {v} (sent at {w.invoke:.3f}) comes before {earliest_value} "
                f"(acknowledged at {earliest_after:.3f})"
            )
        if w.ok and w.complete < earliest_after:
            earliest_after, earliest_value = w.complete, v
    return out


# -- counter ---------------------------------------------------------------------------------


@dataclass
class CounterResult:
    final: int = 0
    acked: int = 0  # the sum of acknowledged deltas
    possible: int = 0  # acked + the sum of deltas of unknown outcome
    violations: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.violations


def check_counter(ops: Sequence[Op], key: str, final: int) -> CounterResult:
    """ops: "incr" (value: the delta; `reply` not kept: an OK incr's result is checked
    through the "read" op its process records right after) and "read" (value: int or None)
    ops of one counter key."""
    incrs = [o for o in ops if o.key == key and o.kind == "incr"]
    acked = sum(int(o.value) for o in incrs if o.ok)  # type: ignore[call-overload]
    unknown = sum(int(o.value) for o in incrs if o.outcome is Outcome.INFO)  # type: ignore[call-overload]
    result = CounterResult(final=final, acked=acked, possible=acked + unknown)
    if not acked <= final <= acked + unknown:
        result.violations.append(
            f"{key}: final value {final} outside [{acked}, {acked + unknown}] (the acknowledged "
            "sum, plus every delta of unknown outcome)"
        )
    # Upper bound of a read: every delta sent, and not refused, before the read was answered.
    sends = sorted((o.invoke, int(o.value)) for o in incrs if o.outcome is not Outcome.FAIL)  # type: ignore[call-overload]
    send_times = [t for t, _ in sends]
    prefix = [0, *itertools.accumulate(d for _, d in sends)]
    last_seen: dict[str, int] = {}
    for o in sorted((o for o in ops if o.key == key and o.kind == "read" and o.ok),
                    key=lambda o: o.complete):  # fmt: skip
        value = int(o.value or 0)  # type: ignore[call-overload]
        bound = prefix[_count_le(send_times, o.complete)]
        if value > bound:
            result.violations.append(
                f"{key}: {o.process} read {value} at {o.complete:.3f}; at most {bound} had been "
                "sent by then"
            )
    for o in sorted((o for o in ops if o.key == key and o.kind == "read" and o.ok),
                    key=lambda o: o.invoke):  # fmt: skip
        value = int(o.value or 0)  # type: ignore[call-overload]
        before = last_seen.get(o.process)
        if before is not None and value < before:
            result.violations.append(
                f"{key}: {o.process} read {value} after it had seen {before} (a counter "
                "never goes down; one connection sees its own writes)"
            )
        last_seen[o.process] = max(value, before or 0)
    return result


def _count_le(sorted_times: Sequence[float], t: float) -> int:
    lo, hi = 0, len(sorted_times)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_times[mid] <= t:
            lo = mid + 1
        else:
            hi = mid
    return lo


# -- register: Wing & Gong / Lowe ------------------------------------------------------------

MAX_OPS_PER_KEY = 5000
MAX_STEPS = 2_000_000


@dataclass
class RegisterResult:
    keys: int = 0
    ops: int = 0
    violations: list[str] = field(default_factory=list)  # keys with no linearization
    unchecked: list[str] = field(default_factory=list)  # too long, or out of search budget

    @property
    def valid(self) -> bool:
        return not self.violations


@dataclass(slots=True)
class _Event:
    op: int  # index of the op
    call: bool
    match: _Event | None = None  # the call's return, or the return's call
    prev: _Event | None = None
    next: _Event | None = None


def check_registers(
    ops: Iterable[Op],
    initial: object = None,
    max_ops: int = MAX_OPS_PER_KEY,
    max_steps: int = MAX_STEPS,
    everything: Sequence[Op] = (),
) -> RegisterResult:
    """ops: "write" (value written) and "read" (value returned; None: no such key) ops.
    Reads that failed or got no answer carry no information and are dropped; writes that
    certainly failed are dropped (a read of their value then has no explanation).
    `everything`: the whole run's history, searched for a value a violation reads (to say
    where it came from)."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for o in ops:
        if o.outcome is Outcome.FAIL or (o.kind == "read" and not o.ok):
            continue
        by_key[o.key].append(o)
    result = RegisterResult(keys=len(by_key))
    for key in sorted(by_key):
        history = by_key[key]
        result.ops += len(history)
        if len(history) > max_ops:
            result.unchecked.append(f"{key}: {len(history)} ops (more than {max_ops})")
            continue
        verdict = linearizable_register(history, initial, max_steps)
        if verdict is None:
            result.unchecked.append(f"{key}: search budget of {max_steps} steps spent")
        elif not verdict:
            result.violations.append(f"{key}: no linearization of {len(history)} ops"
                                     f"{_explain(history, initial, everything)}")  # fmt: skip
    return result


def _explain(history: Sequence[Op], initial: object, everything: Sequence[Op] = ()) -> str:
    """A hint for a human: a read of a value nobody wrote, or the first read (by return
    time) that returned a value already overwritten before the read began."""
    written = {o.value for o in history if o.kind == "write"} | {initial}
    for o in sorted(history, key=lambda o: o.complete):
        if o.kind == "read" and o.value not in written:
            found = [w for w in everything if w.is_write and w.value == o.value]
            where = "".join(
                f" (written as {w.key} by {w.process}, {w.outcome.value}, phase {w.phase},"
                f" {w.invoke:.3f}-{w.complete:.3f}{', ' + w.error[:80] if w.error else ''})"
                for w in found[:2]
            )
            return f"; {o.process} read {o.value!r}, which no write of it wrote{where}"
    for r in sorted((o for o in history if o.kind == "read"), key=lambda o: o.complete):
        source = [w for w in history if w.kind == "write" and w.value == r.value]
        for w in history:
            if (
                w.kind == "write"
                and w.ok
                and all(s.complete < w.invoke for s in source)
                and w.complete < r.invoke
                and (source or r.value == initial)
            ):
                return (
                    f"; {r.process} read {r.value!r} at {r.invoke:.3f}-{r.complete:.3f}, after "
                    f"{w.value!r} had overwritten it (acknowledged at {w.complete:.3f})"
                )
    return ""


def linearizable_register(history: Sequence[Op], initial: object, max_steps: int) -> bool | None:
    """True when some order of the ops, each placed between its call and its return, is a
    legal run of one register starting at `initial`; False when none is; None when the
    search ran out of steps."""
    n = len(history)
    # Events in time order; at equal times calls first (the ops overlap: more lenient).
    events: list[tuple[float, int, int]] = []
    for i, o in enumerate(history):
        events.append((o.invoke, 0, i))
        events.append((o.complete, 1, i))
    events.sort()
    head = _Event(op=-1, call=True)
    calls: dict[int, _Event] = {}
    tail = head
    for _, kind, i in events:
        e = _Event(op=i, call=kind == 0, prev=tail)
        tail.next = e
        tail = e
        if kind == 0:
            calls[i] = e
        else:
            e.match = calls[i]
            calls[i].match = e
    linearized = 0
    state = initial
    cache: set[tuple[int, object]] = set()
    stack: list[tuple[_Event, object]] = []
    entry = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > max_steps:
            return None
        assert entry is not None
        if entry.call:
            o = history[entry.op]
            if o.kind == "write":
                legal, new_state = True, o.value
            else:
                legal, new_state = o.value == state, state
            if legal:
                new_linearized = linearized | (1 << entry.op)
                if (new_linearized, new_state) not in cache:
                    cache.add((new_linearized, new_state))
                    stack.append((entry, state))
                    state, linearized = new_state, new_linearized
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            # A return whose call is not linearized yet: undo the newest choice.
            if not stack:
                return False
            entry, state = stack.pop()
            linearized &= ~(1 << entry.op)
            _unlift(entry)
            entry = entry.next
    assert linearized == (1 << n) - 1
    return True


def _lift(call: _Event) -> None:
    ret = call.match
    assert ret is not None and call.prev is not None and ret.prev is not None
    call.prev.next = call.next
    if call.next is not None:
        call.next.prev = call.prev
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(call: _Event) -> None:
    ret = call.match
    assert ret is not None and call.prev is not None and ret.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    call.prev.next = call
    if call.next is not None:
        call.next.prev = call


# -- availability ----------------------------------------------------------------------------


def longest_gap(
    successes: Iterable[float],
    start: float,
    end: float,
    excluded: Sequence[tuple[float, float]] = (),
) -> float:
    """The longest stretch of [start, end] with no success, not counting time inside an
    excluded interval (a stretch that spans one is measured from its end): e.g. a whole
    cluster down, or a shim under a fault of its own."""
    return longest_gap_at(successes, start, end, excluded)[0]


def longest_gap_at(
    successes: Iterable[float],
    start: float,
    end: float,
    excluded: Sequence[tuple[float, float]] = (),
) -> tuple[float, float]:
    """longest_gap, and the time the stretch began."""
    times = sorted(t for t in successes if start <= t <= end)
    # Cut [start, end] into the pieces outside every excluded interval.
    pieces: list[tuple[float, float]] = []
    cursor = start
    for a, b in sorted(excluded):
        if b <= cursor or a >= end:
            continue
        if a > cursor:
            pieces.append((cursor, a))
        cursor = max(cursor, b)
    if cursor < end:
        pieces.append((cursor, end))
    longest, began = 0.0, start
    for a, b in pieces:
        inside = [a, *(t for t in times if a <= t <= b), b]
        for x, y in itertools.pairwise(inside):
            if y - x > longest:
                longest, began = y - x, x
    return longest, began
