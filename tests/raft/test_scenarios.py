"""Run the narrated interaction scenarios in tests/raft/testdata/*.txt against the core.

Each file is a golden: commands and their expected output. With REWRITE=1 in the
environment the files are rewritten with the actual output instead (review the diff):

    REWRITE=1 .venv/bin/pytest tests/raft/test_scenarios.py
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from tests.raft.interaction import (
    Block,
    InteractionEnv,
    ScenarioError,
    parse_file,
    render_file,
    run_file,
)

TESTDATA = Path(__file__).resolve().parent / "testdata"
SCENARIOS = sorted(TESTDATA.glob("*.txt"))
REQUIRED = {
    "figure7_follower_logs",
    "figure8_previous_term_commit",
    "leader_transfer",
    "lost_log",
    "prevote_checkquorum",
    "read_index",
    "single_node",
    "snapshot_boundary",
}


def test_required_scenarios_exist() -> None:
    assert {p.stem for p in SCENARIOS} >= REQUIRED


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    expected = path.read_text()
    actual = run_file(expected, path.name)
    if os.environ.get("REWRITE") == "1":
        if actual != expected:
            path.write_text(actual)
        return
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{path.name} (expected)",
                tofile=f"{path.name} (actual)",
            )
        )
        pytest.fail(f"{path.name} differs; REWRITE=1 regenerates the goldens\n{diff}")


def test_parse_and_render_round_trip() -> None:
    text = "# a comment\n\ncmd 1 a=b\n----\nline one\nline two\n\nother\n----\nok\n"
    chunks = parse_file(text)
    blocks = [c for c in chunks if isinstance(c, Block)]
    assert [b.command for b in blocks] == ["cmd 1 a=b", "other"]
    assert blocks[0].expected == ["line one", "line two"]
    assert blocks[1].line_no == 8
    assert render_file(chunks) == text


def test_malformed_scenario_is_rejected() -> None:
    with pytest.raises(ScenarioError, match="not followed by ----"):
        parse_file("add-nodes 3\nstatus 1\n")
    with pytest.raises(ScenarioError, match="unknown command"):
        run_file("frobnicate 1\n----\nok\n")


def test_empty_output_prints_ok() -> None:
    env = InteractionEnv()
    env.run("add-nodes 3")
    assert env.run("isolate 2") == "ok"
    assert env.run("deliver-msgs") == "no messages"
