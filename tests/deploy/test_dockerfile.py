"""deploy/Dockerfile: hadolint passes, the image runs the project's console scripts as the
non-root user the pods run as, and .dockerignore sends only what the build needs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from tests.deploy import checks
from tests.deploy.dockerfile import (
    DOCKERFILE,
    DOCKERIGNORE,
    PYPROJECT,
    check_dockerfile,
    copy_sources,
    ignore_patterns,
    in_context,
    instructions,
    lint,
    stages,
)
from tests.deploy.manifests import KUSTOMIZATIONS, REPO_ROOT, render, workloads

SCRIPTS = checks.console_scripts(PYPROJECT)
RUNTIME_LOCK = REPO_ROOT / "requirements-runtime.lock"
SETUP = REPO_ROOT / "setup.py"
PROJECT_INSTALL = "pip install --no-cache-dir --no-deps --no-build-isolation ."


def pods_run_as() -> int:
    users = {
        int(w["spec"]["template"]["spec"]["securityContext"]["runAsUser"])
        for name in KUSTOMIZATIONS
        for w in workloads(render(name))
    }
    assert len(users) == 1, users
    return users.pop()


def test_console_scripts_are_the_programs() -> None:
    assert {"logsvc", "cacheshim"} <= set(SCRIPTS)
    assert SCRIPTS["logsvc"] == "logsvc.cli:main"
    assert SCRIPTS["cacheshim"] == "cacheshim.cli:main"


def test_hadolint_passes(tmp_path: Path) -> None:
    result = lint(DOCKERFILE, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install grpcio\nUSER root\nCMD logsvc serve\n")
    result = lint(bad, tmp_path)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3013", "DL3002", "DL3025"):
        assert rule in result.stdout, result.stdout


def test_the_image_runs_a_console_script_as_the_pods_user() -> None:
    assert check_dockerfile(DOCKERFILE.read_text(), SCRIPTS, pods_run_as()) == []


def test_the_manifests_run_console_scripts_of_the_image() -> None:
    for name in KUSTOMIZATIONS:
        assert checks.check_commands_are_console_scripts(render(name), SCRIPTS) == []


def test_the_build_stage_installs_the_project_and_the_final_stage_copies_it() -> None:
    text = DOCKERFILE.read_text()
    build, final = stages(text)
    assert build.name == "build" and build.base == final.base
    runs = [i.value for i in build.all("RUN")]
    assert any(PROJECT_INSTALL in run for run in runs)
    assert any(i.value.startswith("--from=build /opt/memlog") for i in final.all("COPY"))
    # What `pip install .` reads: pyproject.toml, its readme, setup.py (the C extension), the
    # packages it includes; and the lock that the dependencies come from.
    project = tomllib.loads(PYPROJECT.read_text())
    copied = {s.rstrip("/") for s in copy_sources(text)}
    needed = {"pyproject.toml", "setup.py", project["project"]["readme"], RUNTIME_LOCK.name}
    needed |= {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert needed <= copied, needed - copied


def test_the_image_installs_exactly_the_runtime_lock_and_fails_without_the_extension() -> None:
    build, _ = stages(DOCKERFILE.read_text())
    runs = [i.value for i in build.all("RUN")]
    lock_installs = [r for r in runs if f"-r {RUNTIME_LOCK.name}" in r]
    assert lock_installs and all("--require-hashes" in r for r in lock_installs), runs
    # Nothing resolved when the project goes in: its dependencies came from the lock.
    assert all("--no-deps" in r for r in runs if "pip install" in r), runs
    # The build checks that the compiled GET path is importable (setup.py also fails without
    # a compiler); a compiler is installed for it.
    project_run = next(r for r in runs if PROJECT_INSTALL in r)
    assert "serve_gets_native" in project_run and "assert" in project_run
    assert "HAVE_C_LOADER" in project_run  # the snapshot extension (setup.py's second)
    # Every extension setup.py builds is imported by the build, and its source is sent.
    extensions = re.findall(r'Extension\(\s*"([\w.]+)",\s*sources=\["([^"]+)"', SETUP.read_text())
    assert len(extensions) >= 3, extensions
    imported = re.search(r'-c "import ([^"]+)"', project_run)
    assert imported is not None, project_run
    assert {name for name, _ in extensions} <= {m.strip() for m in imported.group(1).split(",")}
    assert any("gcc" in r for r in runs)
    patterns = ignore_patterns(DOCKERIGNORE.read_text())
    for _, source in extensions:
        assert in_context(source, patterns), source


def test_parser_joins_continuations_and_skips_comments() -> None:
    found = instructions('# c\nFROM a AS b\nRUN x \\\n  # inner\n  && y\nCMD ["z"]\n')
    assert [(i.keyword, i.value) for i in found] == [
        ("FROM", "a AS b"),
        ("RUN", "x && y"),
        ("CMD", '["z"]'),
    ]


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("USER 10001:10001", "USER root", "numeric, non-zero uid"),
        ("USER 10001:10001", "USER 0", "numeric, non-zero uid"),
        ("USER 10001:10001", "USER 20000", "not the pods' runAsUser"),
        ("USER 10001:10001\n", "", "no USER"),
        ('CMD ["logsvc", "--help"]', "CMD logsvc --help", "exec form"),
        ('CMD ["logsvc", "--help"]', 'CMD ["python", "-m", "logsvc.cli"]', "console scripts"),
        ('CMD ["logsvc", "--help"]', 'ENTRYPOINT ["/bin/sh"]', "console scripts"),
        (PROJECT_INSTALL, PROJECT_INSTALL.replace(" .", " memlog"), "pip install ."),
        ("PATH=/opt/memlog/bin:$PATH", "PATH=/usr/local/bin:$PATH", "does not start programs"),
    ],
)
def test_dockerfile_check_catches(old: str, new: str, expect: str) -> None:
    text = DOCKERFILE.read_text()
    assert old in text
    problems = check_dockerfile(text.replace(old, new), SCRIPTS, pods_run_as())
    assert any(expect in p for p in problems), problems


# -- .dockerignore ---------------------------------------------------------------------


def test_dockerignore_sends_what_the_build_copies() -> None:
    patterns = ignore_patterns(DOCKERIGNORE.read_text())
    for source in copy_sources(DOCKERFILE.read_text()):
        path = source.rstrip("/")
        assert (REPO_ROOT / path).exists(), source
        assert in_context(path, patterns), f"{source} is copied but ignored"
        if (REPO_ROOT / path).is_dir():
            for file in (REPO_ROOT / path).rglob("*.py"):
                rel = file.relative_to(REPO_ROOT).as_posix()
                assert "__pycache__" in rel or in_context(rel, patterns), rel


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "memlog-data/log/a/rocksdb/CURRENT",
        "tests/deploy/test_dockerfile.py",
        "bench/logsvc_append.py",
        "deploy/base/kustomization.yaml",
        "logsvc/__pycache__/cli.cpython-311.pyc",
        ".mypy_cache/3.11/x.json",
        "cacheshim/protocol/_fastread.cpython-311-x86_64-linux-gnu.so",
    ],
)
def test_dockerignore_keeps_out(path: str) -> None:
    assert not in_context(path, ignore_patterns(DOCKERIGNORE.read_text()))


def test_dockerignore_matcher_can_fail() -> None:
    patterns = ignore_patterns("*\n!logsvc/\nlogsvc/secret.txt\n**/__pycache__\n")
    assert in_context("logsvc/cli.py", patterns)
    assert not in_context("logsvc/secret.txt", patterns)
    assert not in_context("logsvc/raft/__pycache__/x.pyc", patterns)
    assert not in_context("cacheshim/cli.py", patterns)
    assert in_context("anything", ignore_patterns("# nothing ignored\n"))
