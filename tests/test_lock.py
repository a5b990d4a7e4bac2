"""requirements.lock and requirements-runtime.lock agree with pyproject.toml and with the
installed environment (`make setup` installs exactly the lock), and the check can fail."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK_PY = REPO / ".ci" / "lock.py"


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LOCK_PY), "check", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def files_only(tmp: Path, pyproject: str, lock: str, runtime_lock: str) -> list[str]:
    (tmp / "pyproject.toml").write_text(pyproject)
    (tmp / "requirements.lock").write_text(lock)
    (tmp / "requirements-runtime.lock").write_text(runtime_lock)
    result = check(
        "--no-environment",
        "--pyproject", str(tmp / "pyproject.toml"),
        "--lock", str(tmp / "requirements.lock"),
        "--runtime-lock", str(tmp / "requirements-runtime.lock"),
    )  # fmt: skip
    return [line for line in result.stderr.splitlines() if line.startswith("lock: ")]


def originals() -> tuple[str, str, str]:
    return (
        (REPO / "pyproject.toml").read_text(),
        (REPO / "requirements.lock").read_text(),
        (REPO / "requirements-runtime.lock").read_text(),
    )


def test_the_locks_agree_with_pyproject_and_the_environment() -> None:
    result = check()
    assert result.returncode == 0, result.stderr


def test_every_locked_file_has_a_hash() -> None:
    for name in ("requirements.lock", "requirements-runtime.lock"):
        text = (REPO / name).read_text()
        for block in re.split(r"\n(?=[a-z0-9])", text):
            if "==" in block.split("\n")[0]:
                assert "--hash=sha256:" in block, block.split("\n")[0]


def test_a_specifier_the_lock_does_not_meet_fails(tmp_path: Path) -> None:
    pyproject, lock, runtime = originals()
    assert files_only(tmp_path, pyproject, lock, runtime) == []
    changed = pyproject.replace('"protobuf>=5"', '"protobuf>=99"')
    assert changed != pyproject
    problems = files_only(tmp_path, changed, lock, runtime)
    assert any("protobuf" in p and "pyproject wants" in p for p in problems), problems


def test_a_new_dependency_missing_from_the_lock_fails(tmp_path: Path) -> None:
    pyproject, lock, runtime = originals()
    changed = pyproject.replace('"uvloop>=0.19",', '"uvloop>=0.19",\n    "left-pad>=1",')
    assert changed != pyproject
    problems = files_only(tmp_path, changed, lock, runtime)
    assert any("no pin for left-pad" in p for p in problems), problems


def test_the_runtime_lock_must_pin_what_the_full_lock_pins(tmp_path: Path) -> None:
    pyproject, lock, runtime = originals()
    version = re.search(r"^grpcio==(\S+)", runtime, re.M)
    assert version is not None
    changed = runtime.replace(f"grpcio=={version.group(1)}", "grpcio==1.60.0")
    problems = files_only(tmp_path, pyproject, lock, changed)
    assert any("requirements-runtime.lock pins grpcio==1.60.0" in p for p in problems), problems
