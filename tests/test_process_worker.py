"""The worker's side: the channel carrying calls and replies, the worker's stdio, and the parent's main script."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import _process_helpers as helpers
from _process_testing import TESTS_DIR
from asyncbridge import ProcessExecutor

# -- the channel: frames of any size, beside a chatty stdout ------------------------------


@pytest.mark.anyio
async def test_large_arguments_and_results_cross_intact() -> None:
    """Arguments and results far larger than a pipe holds cross intact, several at once, without
    blocking the event loop while a worker reads them."""
    payloads = [os.urandom(3_000_000 + i) for i in range(4)]
    async with ProcessExecutor(2) as executor:
        results: list[object] = [None] * len(payloads)

        async def round_trip(i: int) -> None:
            results[i] = await executor.run(helpers.return_argument, payloads[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(payloads)):
                tg.start_soon(round_trip, i)
        assert results == payloads
        assert await executor.run(helpers.add, 1) == 1


@pytest.mark.anyio
async def test_chatty_worker_cannot_corrupt_or_block_the_channel(capfd: pytest.CaptureFixture[str]) -> None:
    """A worker printing far more than a pipe holds, frame-like bytes included, still returns its result."""
    async with ProcessExecutor(1) as executor:
        assert await executor.run(helpers.talk, 2000) == 42
        assert await executor.run(helpers.add, 1, 2) == 3
    out, _ = capfd.readouterr()
    assert out.count("chatty worker line") == 2000


# -- stdio --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_worker_output_and_logs_reach_the_parents_stdout_and_stderr(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """What a worker prints to stdout and stderr, and logs, shows on the parent's stdout and stderr."""
    async with ProcessExecutor(1) as executor:
        assert await executor.run(helpers.print_and_log, "t1") == "t1"
    out, err = capfd.readouterr()
    assert "stdout from worker t1" in out
    assert "stderr from worker t1" in err
    assert "logged from worker t1" in err


# -- the parent's main script, imported by workers only when a call needs it --------------


GUARDED_SCRIPT = """
import asyncio, os, sys
sys.path.insert(0, {tests!r})
import _process_helpers as helpers
import asyncbridge

print("top level ran in", "parent" if __name__ == "__main__" else __name__, flush=True)


def triple(x):
    return x * 3


async def main():
    print(await asyncbridge.to_process(helpers.add, 1), flush=True)
    print(await asyncbridge.to_process(triple, 5), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
"""


UNGUARDED_SCRIPT = """
import asyncio
import asyncbridge


def triple(x):
    return x * 3


print(asyncio.run(asyncbridge.to_process(triple, 5)))
"""


def test_functions_of_the_main_script_import_it_only_when_needed(tmp_path: Path) -> None:
    """A function defined in the script being run works; workers import the script (as
    __mp_main__, so its main block does not run) only for a call that needs it."""
    script = tmp_path / "script.py"
    script.write_text(GUARDED_SCRIPT.format(tests=str(TESTS_DIR)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "top level ran in parent",
        "1",  # helpers.add needed nothing from the script: not imported
        "top level ran in __mp_main__",
        "15",
    ]


def test_starting_workers_while_importing_main_says_to_guard_it(tmp_path: Path) -> None:
    """A script that calls to_process at import time, without an if __name__ == "__main__"
    guard, fails with an error telling to add one, instead of starting processes endlessly."""
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_SCRIPT)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "protect the main script's entry point with: if __name__ == '__main__':" in done.stderr
