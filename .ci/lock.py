"""The Python dependency lock: refresh it, install exactly it, and check it against pyproject.

    python .ci/lock.py refresh   # re-resolve (keeps current pins where they still fit); `make lock`
    python .ci/lock.py upgrade   # re-resolve to the newest releases; `make lock-upgrade`
    python .ci/lock.py sync      # uninstall what the lock does not list (after pip installed it)
    python .ci/lock.py check     # the lock agrees with pyproject.toml and with this environment

Two files, one resolution:
- `requirements.lock`: everything `make setup` installs (runtime, the `dev` extra, the build
  backend and pip itself), every file pinned by hash.
- `requirements-runtime.lock`: the subset the container image installs, resolved with the
  first as a constraint so that every version is the same.
uv writes them (`uv pip compile --generate-hashes --universal`); pip installs them with
`--require-hashes`. docs/decisions/0002-dependency-lock.md says why.

`check` needs no network: it compares the pins with pyproject.toml's specifiers, the two locks
with each other, and the installed distributions with the lock (version for version, and the
set of names against the dependency closure that the installed metadata declares).
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.lock"
RUNTIME_LOCK = REPO / "requirements-runtime.lock"
PYTHON_VERSION = "3.11"
# The installer itself belongs to the lock too: `make setup` upgrades the venv's pip to it.
INSTALLER = ("pip",)
# Never uninstalled by `sync`: the project itself (installed editable, not from the lock).
PROJECT = "memlog"

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def read_pins(path: Path) -> dict[str, tuple[str, str | None]]:
    """name -> (version, marker or None) for every `name==version` line of a lock."""
    pins: dict[str, tuple[str, str | None]] = {}
    for line in path.read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            name, version, marker = match.groups()
            pins[canonicalize_name(name)] = (version, marker.strip() if marker else None)
    return pins


def project_requirements(pyproject: Path) -> tuple[list[Requirement], list[Requirement]]:
    """(what the runtime image needs, what `make setup` needs on top of it)."""
    data = tomllib.loads(pyproject.read_text())
    build = [Requirement(r) for r in data["build-system"]["requires"]]
    build += [Requirement(r) for r in INSTALLER]
    runtime = [Requirement(r) for r in data["project"]["dependencies"]]
    dev = [Requirement(r) for r in data["project"]["optional-dependencies"]["dev"]]
    return runtime + build, dev


def applies(marker: str | None, extras: Iterable[str] = ("",)) -> bool:
    if marker is None:
        return True
    return any(Marker(marker).evaluate({"extra": extra}) for extra in extras)


def check_lock(pyproject: Path, lock: Path, runtime_lock: Path) -> list[str]:
    """What is wrong between pyproject.toml and the two locks (offline)."""
    problems: list[str] = []
    runtime, dev = project_requirements(pyproject)
    full, subset = read_pins(lock), read_pins(runtime_lock)
    for where, pins, wanted in (
        (lock.name, full, runtime + dev),
        (runtime_lock.name, subset, runtime),
    ):
        for req in wanted:
            if not applies(str(req.marker) if req.marker else None):
                continue
            pin = pins.get(canonicalize_name(req.name))
            if pin is None:
                problems.append(f"{where} has no pin for {req} (run `make lock`)")
            elif not req.specifier.contains(pin[0], prereleases=True):
                problems.append(f"{where} pins {req.name}=={pin[0]}, pyproject wants {req}")
    for name, (version, _) in subset.items():
        if name not in full:
            problems.append(f"{runtime_lock.name} pins {name}, {lock.name} does not")
        elif full[name][0] != version:
            problems.append(
                f"{runtime_lock.name} pins {name}=={version}, {lock.name} {full[name][0]}"
            )
    return problems


def closure(roots: Iterable[Requirement]) -> set[str]:
    """Names of the installed distributions that roots need, following installed metadata."""
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in roots]
    while todo:
        req, extras = todo.pop()
        if req.marker is not None and not applies(str(req.marker), {"", *extras}):
            continue
        name = canonicalize_name(req.name)
        key = name + "[" + ",".join(sorted(extras)) + "]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            dep = Requirement(line)
            if dep.marker is None or applies(str(dep.marker), {"", *extras}):
                todo.append((dep, frozenset(dep.extras)))
    return {k.split("[")[0] for k in seen}


def installed() -> dict[str, str]:
    return {canonicalize_name(d.metadata["Name"]): d.version for d in md.distributions()}


def check_environment(pyproject: Path, lock: Path) -> list[str]:
    """The running environment holds exactly the lock (plus the project itself)."""
    problems: list[str] = []
    pins = {n: v for n, (v, m) in read_pins(lock).items() if applies(m)}
    have = installed()
    for name, version in sorted(pins.items()):
        if have.get(name) != version:
            problems.append(f"{name}: the lock pins {version}, installed {have.get(name)}")
    for name in sorted(set(have) - set(pins) - {PROJECT}):
        problems.append(f"{name}=={have[name]} is installed but not in the lock (`make setup`)")
    runtime, dev = project_requirements(pyproject)
    needed = closure(runtime + dev)
    for name in sorted(set(pins) - needed):
        problems.append(f"{lock.name} pins {name}, which nothing needs any more (`make lock`)")
    return problems


def compile_locks(upgrade: bool) -> None:
    runtime, _ = project_requirements(REPO / "pyproject.toml")
    build = [str(r) for r in runtime if r.name in ("pip", "setuptools", "wheel")]
    with tempfile.TemporaryDirectory() as tmp:
        extra_in = Path(tmp) / "build-requirements.in"
        extra_in.write_text("\n".join(build) + "\n")
        common = [
            sys.executable, "-m", "uv", "pip", "compile", "--quiet",
            "--generate-hashes", "--universal", "--python-version", PYTHON_VERSION,
            "--custom-compile-command", "make lock",
            "pyproject.toml", str(extra_in),
        ]  # fmt: skip
        subprocess.run(
            [*common, "--extra", "dev", *(["--upgrade"] if upgrade else []), "-o", LOCK.name],
            cwd=REPO,
            check=True,
        )
        subprocess.run(
            [*common, "--constraint", LOCK.name, "-o", RUNTIME_LOCK.name], cwd=REPO, check=True
        )
    # The temporary input's path would differ on every run: name what it held instead.
    for path in (LOCK, RUNTIME_LOCK):
        text = path.read_text().replace(str(extra_in), "build-system.requires + pip")
        path.write_text(text)


def sync() -> int:
    pins = {n for n, (_, m) in read_pins(LOCK).items() if applies(m)}
    extra = sorted(set(installed()) - pins - {PROJECT})
    if extra:
        print("uninstalling what the lock does not list: " + ", ".join(extra))
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", *extra], check=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lock.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("refresh", "upgrade", "sync", "check"))
    parser.add_argument("--pyproject", type=Path, default=REPO / "pyproject.toml")
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--runtime-lock", type=Path, default=RUNTIME_LOCK)
    parser.add_argument(
        "--no-environment", action="store_true", help="check the files only, not the venv"
    )
    args = parser.parse_args(argv)
    if args.action in ("refresh", "upgrade"):
        compile_locks(upgrade=args.action == "upgrade")
        return 0
    if args.action == "sync":
        return sync()
    problems = check_lock(args.pyproject, args.lock, args.runtime_lock)
    if not args.no_environment:
        problems += check_environment(args.pyproject, args.lock)
    for problem in problems:
        print(f"lock: {problem}", file=sys.stderr)
    if not problems:
        print("lock: pyproject.toml, the locks and the environment agree")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
