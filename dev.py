#!/usr/bin/env python3
"""Set up what asyncbridge needs and run it: the one entry point for people and CI.

    python3 dev.py demo                 # the live demo (python -m asyncbridge demo)
    python3 dev.py test                 # the whole test suite
    python3 dev.py test --python 3.12   # ... on another interpreter (found on PATH or under pyenv)
    python3 dev.py test-plain           # the process tests on a plain install (no cloudpickle, no frameworks)
    python3 dev.py lint                 # ruff, mypy --strict and pyright (strict)
    python3 dev.py bench [ARGS...]      # the benchmarks against the peers (bench/run.py)
    python3 dev.py docs                 # build the docs site (strict) into site/ and test it in a browser
    python3 dev.py docs serve           # serve the docs site on http://127.0.0.1:8000, rebuilt on edits

Each command makes (or reuses) a virtual environment under .venv*/ and
installs the project into it with the dependency groups it needs (PEP 735,
pyproject.toml's [dependency-groups]); it uses only the standard library, so
it runs on a machine with nothing but python3. Extra arguments after the
command are passed on (to pytest, to the bench).
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

# command -> (the venv's suffix, the dependency groups it installs)
GROUPS = {
    "demo": ("", ("test", "lint")),
    "test": ("", ("test", "lint")),
    "lint": ("", ("test", "lint")),
    "test-plain": ("-plain", ("test-plain",)),
    "bench": ("-bench", ("bench", "test")),
    "docs": ("-docs", ("docs",)),
}
# What test-plain runs: the process tests, whose pickling an installed cloudpickle once hid a bug from.
PLAIN_TESTS = ["tests/test_plain_install.py", "tests/test_process_*.py"]
# What docs runs after the build; ASYNCBRIDGE_DOCS_TESTS=1 makes them fail, not skip, without mkdocs or a browser.
DOCS_TESTS = ["tests/test_docs_site.py", "tests/test_doc_snippets.py"]


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


def venv_for(python: str, suffix: str, groups: tuple[str, ...]) -> Path:
    out = subprocess.run(
        [python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        check=True,
        capture_output=True,
        text=True,
    )
    version = out.stdout.strip()
    venv = ROOT / ((".venv" if python == sys.executable else f".venv-{version}") + suffix)
    bin_python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    stamp = venv / ".asyncbridge-installed"
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + " ".join(groups).encode()).hexdigest()
    if not bin_python.exists():
        print(f"dev.py: creating {venv.name} with Python {version}", flush=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    if not stamp.exists() or stamp.read_text() != wanted:
        print(f"dev.py: installing asyncbridge with the groups {', '.join(groups)} into {venv.name}", flush=True)
        pip = [str(bin_python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--upgrade", "pip>=25.1"], check=True)  # 25.1 reads dependency groups
        subprocess.run([*pip, "-e", ".", *(f"--group={group}" for group in groups)], check=True, cwd=ROOT)
        stamp.write_text(wanted)
    return bin_python


def run(cmd: list[str], env: dict[str, str] | None = None) -> int:
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=None if env is None else {**os.environ, **env}).returncode


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in GROUPS:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    version = None
    if rest[:1] == ["--python"]:
        version, rest = rest[1], rest[2:]
    suffix, groups = GROUPS[command]
    if version is not None and command == "test":
        groups = ("test",)  # another Python only runs the suite: no linters to install there
    python = venv_for(find_python(version), suffix, groups)
    if command == "demo":
        return run([str(python), "-m", "asyncbridge", "demo", *rest])
    if command == "test":
        return run([str(python), "-m", "pytest", *rest])
    if command == "test-plain":
        tests = sorted({path for pattern in PLAIN_TESTS for path in glob.glob(pattern, root_dir=ROOT)})
        return run([str(python), "-m", "pytest", *tests, *rest], env={"ASYNCBRIDGE_PLAIN_INSTALL": "1"})
    if command == "bench":
        return run([str(python), "bench/run.py", *rest])
    if command == "docs":
        quiet = {"NO_MKDOCS_2_WARNING": "1"}  # Material's banner about its successor, on every run
        if rest[:1] == ["serve"]:
            return run([str(python), "-m", "mkdocs", "serve", *rest[1:]], env=quiet)
        if rest[:1] == ["build"]:
            rest = rest[1:]
        status = run([str(python), "-m", "mkdocs", "build", "--strict", "--site-dir", "site"], env=quiet)
        return status or run([str(python), "-m", "pytest", *DOCS_TESTS, *rest], env={"ASYNCBRIDGE_DOCS_TESTS": "1"})
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
