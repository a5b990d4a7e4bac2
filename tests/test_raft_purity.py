"""The Raft core in logsvc/raft/ is a pure state machine: no I/O, no clock, no global randomness.

DESIGN.md: "no asyncio, no sockets, no clock, no disk, no module-level randomness inside it.
Time arrives as ticks, randomness as an injected random.Random, messages as values."

This test reads every .py file under logsvc/raft/ with `ast` (it never imports them) and fails
on any import of a forbidden module (including submodules such as `asyncio.events`), on any
use of the `random` module other than the type `random.Random`, and on dynamic imports that
would get around both rules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RAFT_DIR = Path(__file__).resolve().parent.parent / "logsvc" / "raft"

# Top-level module names the core may not import, nor any submodule of.
FORBIDDEN_MODULES = frozenset(
    {
        "asyncio",
        "grpc",
        "rocksdict",
        "socket",
        "threading",
        "time",
        "datetime",
        "os",
        "subprocess",
        "selectors",
        "multiprocessing",
        "concurrent",
        # Not in DESIGN.md's list by name, but the way around it: importlib.import_module("time").
        "importlib",
    }
)

# The only name of the `random` module the core may touch: the type of its injected generator.
RANDOM_ALLOWED = "Random"


def _root(module: str) -> str:
    return module.split(".", 1)[0]


def check_source(source: str, filename: str) -> list[str]:
    """Return one message per purity violation in `source`; an empty list means it is pure."""
    try:
        tree = ast.parse(source, filename=filename)
    except SyntaxError as error:
        return [f"{filename}:{error.lineno}: cannot parse: {error.msg}"]

    problems: list[str] = []
    # Names under which this file binds the `random` module itself (`import random as rnd`).
    random_aliases: set[str] = set()

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = _root(alias.name)
                if root in FORBIDDEN_MODULES:
                    problems.append(
                        f"{filename}:{node.lineno}: imports forbidden module {alias.name!r}"
                    )
                elif alias.name == "random":
                    random_aliases.add(alias.asname or "random")
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0 or node.module is None:
                continue  # relative import: a sibling inside logsvc/raft, checked on its own
            root = _root(node.module)
            if root in FORBIDDEN_MODULES:
                problems.append(
                    f"{filename}:{node.lineno}: imports from forbidden module {node.module!r}"
                )
            elif node.module == "random":
                for alias in node.names:
                    if alias.name != RANDOM_ALLOWED:
                        problems.append(
                            f"{filename}:{node.lineno}: imports random.{alias.name}; only "
                            f"random.{RANDOM_ALLOWED} (the injected generator's type) is allowed"
                        )
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "__import__":
                problems.append(f"{filename}:{node.lineno}: dynamic import via __import__()")

    # Second pass, once every alias of the module is known: random.<name> other than Random.
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in random_aliases
            and node.attr != RANDOM_ALLOWED
        ):
            problems.append(
                f"{filename}:{node.lineno}: uses module-level {node.value.id}.{node.attr}; "
                "take randomness from the injected random.Random"
            )

    return sorted(set(problems), key=_line_order)


def _line_order(problem: str) -> tuple[int, str]:
    parts = problem.split(":", 2)
    line = int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else 0
    return (line, problem)


def test_raft_core_is_pure() -> None:
    files = sorted(RAFT_DIR.rglob("*.py"))
    assert files, f"no .py files under {RAFT_DIR}: the purity check must not pass vacuously"
    problems: list[str] = []
    for path in files:
        shown = str(path.relative_to(RAFT_DIR.parent.parent))
        problems.extend(check_source(path.read_text(encoding="utf-8"), shown))
    assert not problems, "logsvc/raft/ must stay pure:\n" + "\n".join(problems)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import time\n", "forbidden module 'time'"),
        ("import random\nx = random.randint(1, 2)\n", "random.randint"),
        ("import asyncio.events\n", "forbidden module 'asyncio.events'"),
        ("from os import path\n", "forbidden module 'os'"),
        ("from concurrent.futures import Future\n", "forbidden module 'concurrent.futures'"),
        ("import datetime as dt\n", "forbidden module 'datetime'"),
        ("from random import randint\n", "imports random.randint"),
        ("from random import *\n", "imports random.*"),
        ("import random as rnd\nrnd.seed(1)\n", "rnd.seed"),
        ("import random\nchoose = random.choice\n", "random.choice"),
        ("m = __import__('time')\n", "__import__"),
        ("import importlib\n", "forbidden module 'importlib'"),
        ("def f(:\n", "cannot parse"),
    ],
)
def test_checker_reports_violation(source: str, expected: str) -> None:
    problems = check_source(source, "example.py")
    assert problems, f"checker accepted impure source:\n{source}"
    assert any(expected in problem for problem in problems), problems
    assert all(problem.startswith("example.py:") for problem in problems), problems


def test_checker_accepts_pure_source() -> None:
    source = """\
from __future__ import annotations

import random
from dataclasses import dataclass, field
from random import Random

from . import log
from .messages import Message


@dataclass
class Node:
    rng: random.Random
    other: Random
    inbox: list[Message] = field(default_factory=list)

    def tick(self) -> int:
        return self.rng.randint(10, 20) + log.last_index()
"""
    assert check_source(source, "clean.py") == []
