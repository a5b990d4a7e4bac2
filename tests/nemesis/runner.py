"""A nemesis run: start the deployment and the clients, go through the profile's phases (in
an order, with targets and durations drawn from the seed), one fault each, then heal, let
the shims converge, read everything back and check it.

Each phase writes keys of its own (p<N>:...), so the checkers judge each fault apart; every
phase's keys are read back only at the end, after every later fault (a whole-cluster crash
among them), so what a phase acknowledged must survive the rest of the run too.

Availability, per phase and workload, over the phase's window (the fault and the settle time
after it): the longest stretch without a successful write, and for the register workload
the longest without a successful linearizable read, each through one shim (the larger of
the two shims; a shim under a fault of its own is left out), not counting time while the
log had no quorum of running processes (the whole-cluster crash, until every process answers
again).
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.cacheshim.harness import same_index
from tests.nemesis.checkers import (
    check_counter,
    check_list_append,
    check_registers,
    longest_gap_at,
)
from tests.nemesis.deployment import Deployment
from tests.nemesis.history import Op, Outcome, op
from tests.nemesis.workloads import (
    CLIENT_TIMEOUT_S,
    CLIENTS,
    WORKLOADS,
    Client,
    Control,
    big_ident,
    connect,
)

TARGET_S = 3.0  # issue 21: with one log node killed, paused and resumed, or restarted
# Faults of one log node, which the target is about.
ONE_LOG_NODE = ("kill-leader", "kill-follower", "restart-leader", "pause-leader", "pause-follower")
FAULTS = (
    "none",
    *ONE_LOG_NODE,
    "slow-disk-leader",
    "pause-shim",
    "kill-shim",
    "crash-all",
)


@dataclass(frozen=True)
class Profile:
    name: str
    phases: tuple[tuple[str, str], ...]  # (fault, "small" or "1mb")
    fault_s: tuple[float, float]  # how long a fault lasts (drawn from the range)
    settle_s: float  # measured after the heal
    warm_s: float  # before the fault, in the phase's keys
    slow_disk_ms: tuple[int, int]  # a slow fsync's delay


PROFILES = {
    # CI: each kind of fault once, short, one with 1 MB values (a minute on a quiet machine).
    # The graceful restart and the shim's kill -9 are left to the long profile (a process
    # start costs seconds on a loaded machine).
    "short": Profile(
        "short",
        (
            ("kill-leader", "small"),
            ("pause-leader", "1mb"),
            ("pause-follower", "small"),
            ("slow-disk-leader", "small"),
            ("pause-shim", "small"),
            ("crash-all", "small"),
        ),
        fault_s=(1.5, 2.5),
        settle_s=1.5,
        warm_s=0.3,
        slow_disk_ms=(50, 150),
    ),
    # make nemesis: every fault with small and with 1 MB values (about five minutes).
    "long": Profile(
        "long",
        tuple((f, v) for f in FAULTS for v in ("small", "1mb")),
        fault_s=(4.0, 7.0),
        settle_s=4.0,
        warm_s=1.0,
        slow_disk_ms=(50, 250),
    ),
}


@dataclass
class Phase:
    index: int
    fault: str
    values: str
    target: str = ""
    start: float = 0.0
    healed: float = 0.0
    end: float = 0.0
    excluded: list[tuple[float, float]] = field(default_factory=list)
    shims_out: set[int] = field(default_factory=set)


@dataclass
class Row:
    phase: Phase
    workload: str
    ok: int = 0
    failed: int = 0
    unknown: int = 0
    lost: str = "-"
    dup: str = "-"
    phantom: str = "-"
    other: str = "-"
    write_gap: float | None = None
    read_gap: float | None = None  # linearizable reads
    # Where each gap was: "shim S, from +T s" (T: since the fault began).
    where: dict[str, str] = field(default_factory=dict)
    write_p50: float | None = None  # median time to acknowledge a write


@dataclass
class RunResult:
    seed: int
    profile: str
    rows: list[Row] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # safety: must stay empty
    unchecked: list[str] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)  # the 3 s target not met
    table: str = ""
    seconds: float = 0.0
    load: tuple[str, str] = ("", "")

    def gaps(self, faults: Sequence[str]) -> list[float]:
        return [g for r in self.rows if r.phase.fault in faults
                for g in (r.write_gap, r.read_gap) if g is not None]  # fmt: skip


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def run(
    profile: Profile,
    seed: int,
    root: Path | None = None,
    fast_timing: bool = False,
    keep: bool = False,
    sabotage: bool = False,
    out: Callable[[str], None] = lambda line: print(line, flush=True),
) -> RunResult:
    """One run; the deployment lives under root (a new temporary folder by default, removed
    after unless keep)."""
    rng = random.Random(seed)
    began = time.monotonic()
    own_root = root is None
    base = Path(tempfile.mkdtemp(prefix="memlog-nemesis-")) if root is None else root
    result = RunResult(seed, profile.name)
    result.load = (load_average(), "")
    out(f"nemesis: seed {seed}, profile {profile.name}, load average {result.load[0]} "
        f"(rerun: python -m tests.nemesis --profile {profile.name} --seed {seed}); "
        f"data under {base}")  # fmt: skip
    deployment = Deployment(base / "memlog", shim_args=["--write-timeout-s", "5"],
                            fast_timing=fast_timing)  # fmt: skip
    ctl = Control()
    clients: list[Client] = []
    phases: list[Phase] = []
    finished = False
    try:
        deployment.start()
        for shim in range(2):
            for cls in CLIENTS:
                name = f"{cls.__name__.lower()}{shim}"
                port = deployment.shim_ports[shim]
                clients.append(cls(name, shim, port, rng.randrange(1 << 32), ctl))
        for c in clients:
            c.start()
        start = Phase(0, "(start)", "small", start=time.monotonic())
        wait_for(lambda: sum(o.ok and o.is_write for o in ctl.history) >= 20, 60,
                 "20 acknowledged writes after the start")  # fmt: skip
        start.healed = start.end = time.monotonic()
        phases.append(start)
        order = list(profile.phases)
        rng.shuffle(order)
        for i, (fault, values) in enumerate(order, 1):
            ctl.mode = (i, values == "1mb")
            ready = _every_workload_acknowledged(ctl, clients, i, values == "1mb")
            phase = run_phase(deployment, profile, rng, Phase(i, fault, values), ready)
            phases.append(phase)
            out(f"  phase {i}: {fault} ({values}) {phase.target}: "
                f"{phase.healed - phase.start:.1f}s + {phase.end - phase.healed:.1f}s")  # fmt: skip
        ctl.stop.set()
        for c in clients:
            c.join(CLIENT_TIMEOUT_S + 10)
        stuck = [c.name for c in clients if c.is_alive()]
        if stuck:
            result.violations.append(f"clients still waiting after the run: {stuck}")
        if sabotage:
            spoil(deployment, ctl.history, out)
        final = read_back(deployment, len(phases), result)
        check(result, phases, ctl.history, clients, final)
        if result.violations:
            keep = True  # the nodes' and shims' logs, and the history, for a post-mortem
            dump_history(base / "history.jsonl", [*ctl.history, *final.reads])
            out(f"violations: history in {base / 'history.jsonl'}, logs in {base / 'memlog'}")
        finished = True
    finally:
        ctl.stop.set()
        deployment.stop()
        if own_root and not keep and finished:
            shutil.rmtree(base, ignore_errors=True)
        elif not finished:
            out(f"the run stopped early: the processes' logs are in {base / 'memlog'}")
    result.seconds = time.monotonic() - began
    result.load = (result.load[0], load_average())
    result.table = render(result)
    out(result.table)
    return result


def spoil(d: Deployment, history: list[Op], out: Callable[[str], None]) -> None:
    """A self-test of the whole chain (--sabotage): behind the clients' backs, remove one
    acknowledged list value, append a value nobody sent, and overwrite a register; the
    checks must then report a lost value, a phantom and a non-linearizable register."""
    conn = connect(d.shim_ports[0])
    try:
        acked = next(o for o in history if o.kind == "append" and o.ok)
        conn.lrem(acked.key, 1, str(acked.value))
        conn.rpush(acked.key, "sabotage-phantom")
        register = next(o for o in history if o.kind == "write" and ":reg:" in o.key)
        conn.set(register.key, "sabotage-register")
        out(f"sabotage: removed {acked.value} from {acked.key}, appended a phantom there, "
            f"set {register.key}")  # fmt: skip
    finally:
        conn.close()


def dump_history(path: Path, history: list[Op]) -> None:
    """One JSON object per op, in the order they were recorded."""
    with path.open("w") as f:
        for o in history:
            f.write(json.dumps({
                "process": o.process, "kind": o.kind, "key": o.key, "value": o.value,
                "invoke": o.invoke, "complete": None if o.complete == math.inf else o.complete,
                "outcome": o.outcome.value, "shim": o.shim, "phase": o.phase, "error": o.error,
                "derived": o.derived,
            }) + "\n")  # fmt: skip


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.02)


def _hold(seconds: float) -> None:
    """The fault lasts this long (the point of the run, not a wait for a condition)."""
    time.sleep(seconds)


def _every_workload_acknowledged(
    ctl: Control, clients: list[Client], phase: int, big: bool
) -> Callable[[], bool]:
    """True once every workload of the phase (1 MB writes too, when on) had an operation
    acknowledged in the phase's keys: the fault then meets every workload under way."""
    first = len(ctl.history)
    workload_of = {c.name: c.workload for c in clients}
    wanted = {c.workload for c in clients if big or c.workload != "1mb-register"}
    seen: set[str] = set()

    def ready() -> bool:
        nonlocal first
        for o in ctl.history[first:]:
            if o.ok and o.phase == phase:
                seen.add(workload_of[o.process])
        first = len(ctl.history)
        return wanted <= seen

    return ready


def run_phase(
    d: Deployment,
    profile: Profile,
    rng: random.Random,
    phase: Phase,
    ready: Callable[[], bool] = lambda: True,
) -> Phase:
    _hold(profile.warm_s)
    wait_for(ready, 120, f"an acknowledged operation of every workload in phase {phase.index}")
    hold = rng.uniform(*profile.fault_s)
    fault = phase.fault
    zone = ""
    if fault.endswith("-leader"):
        zone = d.leader(60)
    elif fault.endswith("-follower"):
        leader = d.leader(60)
        followers = [z for z in d.zones() if z != leader]
        local = [z for z in followers if z in (d.shim_zone(0), d.shim_zone(1))]
        zone = rng.choice(local or followers)
    if zone:
        shims = [str(i) for i in range(2) if d.shim_zone(i) == zone]
        phase.target = f"{zone}" + (f" (local to shim {','.join(shims)})" if shims else "")
    phase.start = time.monotonic()
    if fault == "none":
        _hold(hold)
    elif fault.startswith("kill-") and zone:
        d.kill_log(zone)
        _hold(hold)
        d.start_log(zone)
        d.wait_answering([zone], 1, 60)
    elif fault == "restart-leader":
        d.terminate_log(zone)
        d.start_log(zone)
        d.wait_answering([zone], 1, 60)
    elif fault.startswith("pause-") and zone:
        d.pause(f"log:{zone}")
        _hold(hold)
        d.resume(f"log:{zone}")
    elif fault == "slow-disk-leader":
        delay = rng.randint(*profile.slow_disk_ms)
        phase.target += f" fsync +{delay}ms"
        d.slow_disk(zone, delay)
        _hold(hold)
        d.slow_disk(zone, 0)
    elif fault in ("pause-shim", "kill-shim"):
        shim = rng.randrange(2)
        phase.target = f"shim {shim}"
        phase.shims_out.add(shim)
        if fault == "pause-shim":
            d.pause(f"shim:{shim}")
            _hold(hold)
            d.resume(f"shim:{shim}")
        else:
            d.kill_shim(shim)
            d.start_shims([shim])
    elif fault == "crash-all":
        for z in d.zones():
            d.kill_log(z)
        for shim in range(2):
            d.kill_shim(shim)
        _hold(min(hold, 1.0))
        for z in d.zones():
            d.start_log(z)
        d.wait_answering(list(d.zones()), 2, 60)
        d.start_shims([0, 1])
        phase.excluded.append((phase.start, time.monotonic()))
        phase.target = "3 log nodes + 2 shims, kill -9"
    else:
        raise ValueError(f"unknown fault {fault}")
    phase.healed = time.monotonic()
    _hold(profile.settle_s)
    phase.end = time.monotonic()
    return phase


# -- the end: converge, read back ------------------------------------------------------------


@dataclass
class Final:
    lists: dict[str, list[str]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    reads: list[Op] = field(default_factory=list)  # registers and 1 MB registers
    corrupt: list[str] = field(default_factory=list)


def read_back(d: Deployment, phases: int, result: RunResult) -> Final:
    """Once the clients stopped: every process up, the two shims at one applied index with
    one digest; then every key of every phase, through a linearizable connection."""
    d.heal()
    d.leader(60)
    conns = [connect(port, linearizable=True) for port in d.shim_ports]
    try:
        same_index(conns, timeout_s=60)
        digests = {c.execute_command("DEBUG", "DIGEST") for c in conns}  # type: ignore[no-untyped-call]
        if len(digests) != 1:
            result.violations.append(f"the shims hold different keyspaces: digests {digests}")
        final = Final()
        conn = conns[0]
        for p in range(phases):
            for i in range(3):
                key = f"p{p}:list:{i}"
                final.lists[key] = [_raw(v).decode() for v in _list(conn.lrange(key, 0, -1))]
            value = conn.get(f"p{p}:counter")
            final.counters[f"p{p}:counter"] = int(_raw(value) or 0)
            for name in ("reg:0", "reg:1", "big:0", "big:1"):
                key = f"p{p}:{name}"
                started = time.monotonic()
                raw = None if (got := conn.get(key)) is None else _raw(got)
                read: object = None
                if raw is not None and name.startswith("big"):
                    read = big_ident(raw)
                    if read is None:
                        final.corrupt.append(f"{key}: {len(raw)} bytes, not a value sent")
                        read = f"corrupt:{len(raw)}"
                elif raw is not None:
                    read = raw.decode()
                final.reads.append(op("final", "read", key, read, started, time.monotonic(),
                                      shim=0, phase=p))  # fmt: skip
        return final
    finally:
        for c in conns:
            c.close()


def _raw(value: object) -> bytes:
    assert isinstance(value, bytes), value
    return value


def _list(value: object) -> list[object]:
    assert isinstance(value, list), value
    return value


# -- checks and measurements -----------------------------------------------------------------


def check(
    result: RunResult, phases: list[Phase], history: list[Op], clients: list[Client], final: Final
) -> None:
    workload_of = {c.name: c.workload for c in clients}
    workload_of["final"] = "final"
    readers = {c.name for c in clients if c.linearizable}
    by: dict[tuple[int, str], list[Op]] = defaultdict(list)
    for o in history:
        by[(o.phase, workload_of[o.process])].append(o)
    windows: dict[str, list[Op]] = defaultdict(list)
    for o in history:
        windows[workload_of[o.process]].append(o)
    for o in final.reads:
        kind = "1mb-register" if ":big:" in o.key else "register"
        by[(o.phase, kind)].append(o)
    for phase in phases:
        for workload in WORKLOADS:
            ops = by.get((phase.index, workload), [])
            if workload == "1mb-register" and phase.values != "1mb":
                if any(o.process != "final" for o in ops):  # sent as the last 1 MB phase ended
                    result.violations.append(
                        f"phase {phase.index}: 1 MB writes outside 1 MB phases"
                    )
                continue
            row = Row(phase, workload)
            own = [o for o in ops if o.process != "final" and not o.derived]
            row.ok = sum(o.ok for o in own)
            row.failed = sum(o.outcome is Outcome.FAIL for o in own)
            row.unknown = sum(o.outcome is Outcome.INFO for o in own)
            _judge(row, ops, phase, final, result, history)
            window = windows[workload]
            row.write_gap = _gap(
                row, "write", window, lambda o: o.ok and o.is_write and not o.derived
            )
            took = sorted(o.complete - o.invoke for o in own if o.ok and o.is_write)
            row.write_p50 = took[len(took) // 2] if took else None
            if workload == "register":
                row.read_gap = _gap(row, "linearizable read", window,
                                    lambda o: o.ok and o.process in readers)  # fmt: skip
            result.rows.append(row)
            if phase.fault in ONE_LOG_NODE:
                for what, gap in (("write", row.write_gap), ("linearizable read", row.read_gap)):
                    if gap is not None and gap >= TARGET_S:
                        result.misses.append(
                            f"phase {phase.index} {phase.fault} ({phase.values}) {workload}: "
                            f"{gap:.2f}s without a successful {what} ({row.where[what]})"
                        )


def _gap(row: Row, what: str, ops: list[Op], success: Callable[[Op], bool]) -> float | None:
    """The longest stretch of the phase's window without a success, through either shim
    (the worse one), leaving out a shim under a fault of its own and excluded time."""
    phase = row.phase
    worst: tuple[float, float, int] | None = None
    for shim in range(2):
        if shim in phase.shims_out:
            continue
        times = [o.complete for o in ops if o.shim == shim and success(o)]
        if not times:
            continue  # this workload never ran through this shim
        gap, began = longest_gap_at(times, phase.start, phase.end, phase.excluded)
        if worst is None or gap > worst[0]:
            worst = (gap, began, shim)
    if worst is None:
        return None
    gap, began, shim = worst
    healed = phase.healed - phase.start
    row.where[what] = f"shim {shim}, from +{began - phase.start:.1f}s; healed at +{healed:.1f}s"
    return gap


def _judge(
    row: Row, ops: list[Op], phase: Phase, final: Final, result: RunResult, history: list[Op]
) -> None:
    where = f"phase {phase.index} ({phase.fault}, {phase.values}) {row.workload}"
    prefix = f"p{phase.index}:"
    if row.workload == "list-append":
        lists = {k: v for k, v in final.lists.items() if k.startswith(prefix)}
        lr = check_list_append(ops, lists)
        row.lost, row.dup = str(len(lr.lost)), str(len(lr.duplicates))
        row.phantom, row.other = str(len(lr.phantoms)), str(len(lr.reordered))
        for kind, found in (("lost", lr.lost), ("duplicate", lr.duplicates),
                            ("phantom", lr.phantoms), ("reordered", lr.reordered)):  # fmt: skip
            result.violations += [f"{where}: {kind}: {v}" for v in found[:5]]
    elif row.workload == "counter":
        key = f"{prefix}counter"
        cr = check_counter(ops, key, final.counters.get(key, 0))
        row.lost = str(int(cr.final < cr.acked))
        row.phantom = str(int(cr.final > cr.possible))
        row.other = str(len(cr.violations) - int(row.lost) - int(row.phantom))
        result.violations += [f"{where}: {v}" for v in cr.violations[:5]]
    else:
        rr = check_registers(ops, everything=history)
        result.unchecked += [f"{where}: {u}" for u in rr.unchecked]
        result.violations += [f"{where}: not linearizable: {v}" for v in rr.violations]
        if row.workload == "register":
            row.other = str(len(rr.violations))
        else:
            corrupt = [c for c in final.corrupt if c.startswith(prefix)]
            sent = {str(o.value) for o in ops if o.is_write and o.outcome is not Outcome.FAIL}
            strangers = [
                o for o in ops
                if o.process == "final" and o.value is not None
                and not str(o.value).startswith("corrupt:") and str(o.value) not in sent
            ]  # fmt: skip
            row.lost = str(len(rr.violations))
            row.phantom = str(len(corrupt) + len(strangers))
            result.violations += [f"{where}: corrupt: {c}" for c in corrupt]


def render(result: RunResult) -> str:
    head = ("#", "fault", "target", "values", "workload", "ok", "failed", "unknown", "lost",
            "dup", "phantom", "other", "write p50", "write gap", "lin-read gap")  # fmt: skip
    lines = [head]
    for r in result.rows:
        p = r.phase
        lines.append((str(p.index), p.fault, p.target, p.values, r.workload, str(r.ok),
                      str(r.failed), str(r.unknown), r.lost, r.dup, r.phantom, r.other,
                      "-" if r.write_p50 is None else f"{r.write_p50 * 1000:.0f}ms",
                      "-" if r.write_gap is None else f"{r.write_gap:.2f}s",
                      "-" if r.read_gap is None else f"{r.read_gap:.2f}s"))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
            for line in lines]  # fmt: skip
    text.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    one = result.gaps(ONE_LOG_NODE)
    text.append("")
    text.append(
        f"seed {result.seed}, profile {result.profile}, {result.seconds:.0f}s, load average "
        f"{result.load[0]} at the start, {result.load[1]} at the end"
    )
    if result.violations:
        shown = "\n  ".join(result.violations[:30])
        text.append(f"safety: {len(result.violations)} VIOLATIONS:\n  {shown}")
    else:
        text.append("safety: no violation")
    if result.unchecked:
        text.append("not checked: " + "; ".join(result.unchecked[:10]))
    target = f"target (one log node killed, paused or restarted: every stretch under {TARGET_S:g}s)"
    if result.misses:
        shown = "\n  ".join(result.misses)
        text.append(f"{target}: MISSED {len(result.misses)} times:\n  {shown}")
    elif one:
        text.append(f"{target}: met, longest {max(one):.2f}s")
    return "\n".join(text)
