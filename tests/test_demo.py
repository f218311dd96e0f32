"""python -m asyncbridge demo and the command line."""

from __future__ import annotations

import re
import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "asyncbridge", *args], capture_output=True, text=True, timeout=120)


def _wall(output: str, row: str) -> float:
    match = re.search(re.escape(row) + r"\s+([0-9.]+)s", output)
    assert match, f"no row {row!r} in:\n{output}"
    return float(match.group(1))


def test_demo_shows_the_loop_stall_and_the_fix() -> None:
    """The demo shows blocking calls serialised in a coroutine but overlapped through async_wrap, and a bound of 2."""
    out = _run("demo", "--quick")
    assert out.returncode == 0, out.stderr
    inline = _wall(out.stdout, "3 blocking calls made directly in a coroutine")
    gathered = _wall(out.stdout, "the same 3 through @async_wrap, gathered")
    assert gathered < inline / 2
    assert "2 distinct threads ran them, at most 2 at a time" in out.stdout
    assert "2 CPU-bound jobs run in a coroutine" in out.stdout
    assert "thread asyncbridge-default-" in out.stdout  # the timeline names the threads
    _wall(out.stdout, "the same 2 in processes (ProcessExecutor(2))")
    assert out.stdout.count("process pid ") == 2  # two worker processes in the timeline


def test_cli_usage_and_unknown_command() -> None:
    """python -m asyncbridge without a command prints usage; an unknown command fails with exit code 2."""
    assert "usage: python -m asyncbridge" in _run("--help").stdout
    bad = _run("frobnicate")
    assert bad.returncode == 2
    assert "unknown command 'frobnicate'" in bad.stderr
