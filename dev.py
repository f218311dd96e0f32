#!/usr/bin/env python3
"""Set up what asyncbridge needs and run it: the one entry point for people and CI.

    python3 dev.py demo                 # the live demo (python -m asyncbridge demo)
    python3 dev.py test                 # the whole test suite
    python3 dev.py test --python 3.12   # ... on another interpreter (found on PATH or under pyenv)
    python3 dev.py lint                 # ruff, mypy --strict and pyright (strict)
    python3 dev.py bench [ARGS...]      # the benchmarks against the peers (bench/run.py)

Each command makes (or reuses) a virtual environment under .venv*/ and
installs the project into it with the extras it needs; it uses only the
standard library, so it runs on a machine with nothing but python3.
Extra arguments after the command are passed on (to pytest, to the bench).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent

EXTRAS = {"demo": "test", "test": "test", "lint": "lint,test", "bench": "bench,test"}


def find_python(version: str | None) -> str:
    if version is None:
        return sys.executable
    if os.sep in version:
        return version
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    for root in roots:
        matches = sorted(glob.glob(os.path.join(root, "versions", f"{version}*", "bin", "python")))
        if root and matches:
            return matches[-1]
    found = shutil.which(f"python{version}")
    if found and f"{os.sep}shims{os.sep}" not in found:  # a pyenv shim fails for versions not selected
        return found
    sys.exit(f"dev.py: no Python {version} found on PATH or under pyenv; install it or pass a path")


def venv_for(python: str, extras: str) -> Path:
    out = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    )
    version = out.stdout.strip()
    venv = ROOT / (".venv" if python == sys.executable else f".venv-{version}")
    bin_python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    stamp = venv / ".asyncbridge-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    if not bin_python.exists():
        print(f"dev.py: creating {venv.name} with Python {version}", flush=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"dev.py: installing asyncbridge[{extras}] into {venv.name}", flush=True)
        pip = [str(bin_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--upgrade", "pip"], check=True)
        subprocess.run([*pip, "-e", f".[{extras}]"], check=True, cwd=ROOT)
        stamp.write_text(wanted)
    return bin_python


def run(cmd: list[str]) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    version = None
    if rest[:1] == ["--python"]:
        version, rest = rest[1], rest[2:]
    python = venv_for(find_python(version), EXTRAS[command])
    if command == "demo":
        return run([str(python), "-m", "asyncbridge", "demo", *rest])
    if command == "test":
        return run([str(python), "-m", "pytest", *rest])
    if command == "bench":
        return run([str(python), "bench/run.py", *rest])
    bindir = python.parent
    status = 0
    for cmd in (
        [str(bindir / "ruff"), "check", "src", "tests", "bench", "examples", "dev.py"],
        [str(bindir / "ruff"), "format", "--check", "src", "tests", "bench", "examples", "dev.py"],
        [str(bindir / "mypy")],
        [str(bindir / "pyright")],
    ):
        status |= run(cmd)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
