"""Starting worker processes: the initializer, start failures and their retries, multiprocessing start methods."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

import _process_helpers as helpers
from _process_testing import (
    TESTS_DIR,
    accept_started,
    child_pids,
    process_gone,
    set_start_retry_delay,
    sync_rendezvous,
    wait_gone,
)
from asyncbridge import ProcessExecutor, WorkerCrashedError, WorkerStartError

# -- the initializer ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_initializer_runs_in_each_worker_before_its_calls() -> None:
    """initializer(*initargs) runs in every worker before its first call."""
    async with ProcessExecutor(1, initializer=helpers.set_greeting, initargs=("hello",)) as executor:
        assert await executor.run(helpers.get_greeting) == "hello"


# -- start failures -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_failing_starts_stop_respawning_and_fail_fast_saying_why(tmp_path: Path) -> None:
    """A worker that cannot start (failing initializer) is retried a few times, then calls fail
    at once with WorkerStartError giving the reason, without starting more processes."""
    counter, flag = tmp_path / "starts", tmp_path / "broken"
    flag.touch()
    async with ProcessExecutor(
        1, initializer=helpers.failing_initializer, initargs=(str(counter), str(flag))
    ) as executor:
        with pytest.raises(WorkerStartError) as info:
            await executor.run(helpers.add, 1)
        message = str(info.value)
        assert "failed to start 3 times in a row" in message
        assert "initializer failing_initializer() raised ValueError: database unreachable" in message
        assert isinstance(info.value.__cause__, ValueError)
        assert "database unreachable" in str(info.value.__cause__.__cause__)  # the worker's traceback
        assert counter.read_text().count("start") == 3
        for _ in range(5):
            started = time.monotonic()
            with pytest.raises(WorkerStartError, match="database unreachable"):
                await executor.run(helpers.add, 1)
            assert time.monotonic() - started < 0.1
        assert counter.read_text().count("start") == 3
        assert executor.statistics().workers == 0


@pytest.mark.anyio
async def test_calls_run_again_once_a_start_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After starts kept failing, one start is tried again after START_RETRY_DELAY; once one
    succeeds, calls run normally."""
    delay = 0.05
    set_start_retry_delay(monkeypatch, delay)
    counter, flag = tmp_path / "starts", tmp_path / "broken"
    flag.touch()
    async with ProcessExecutor(
        1, initializer=helpers.failing_initializer, initargs=(str(counter), str(flag))
    ) as executor:
        with pytest.raises(WorkerStartError):
            await executor.run(helpers.add, 1)
        retry_from = time.monotonic() + delay  # the last start failed before the call did
        flag.unlink()  # the database is back
        while (left := retry_from - time.monotonic()) > 0:
            await anyio.sleep(left)  # the delay under test, by the clock (timers may end early)
        assert await executor.run(helpers.add, 2) == 2
        assert counter.read_text().count("start") == 4
        assert await executor.run(helpers.add, 3) == 3


def test_worker_dying_before_ready_is_a_start_failure_with_its_exit_code() -> None:
    """A worker process that exits before it is ready (a crash at start-up) counts as a failed
    start, and the error gives its exit code."""
    with (
        ProcessExecutor(1, initializer=helpers.exiting_initializer, initargs=(5,)) as executor,
        pytest.raises(WorkerStartError, match=r"exited with code 5 before it was ready"),
    ):
        executor.submit(helpers.add, 1).result(30)


def test_a_launch_that_fails_is_a_start_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the worker process cannot be launched at all, calls fail with WorkerStartError naming the OS error."""
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with (
        ProcessExecutor(1) as executor,
        pytest.raises(WorkerStartError, match=r"starting a worker process failed: FileNotFoundError"),
    ):
        executor.submit(helpers.add, 1).result(30)


# -- starts that hang: start_timeout -------------------------------------------------------


@pytest.mark.anyio
async def test_a_start_that_hangs_is_killed_and_calls_fail_saying_it_timed_out() -> None:
    """A worker whose initializer never returns is killed after start_timeout and counts as a
    failed start: after 3 in a row the call fails with WorkerStartError naming the timeout and the
    initializer, and no worker process is left."""
    before = child_pids()
    async with ProcessExecutor(1, initializer=helpers.block_forever, start_timeout=0.5) as executor:
        started = time.monotonic()
        with anyio.fail_after(60), pytest.raises(WorkerStartError) as info:
            await executor.run(helpers.add, 1)
        assert time.monotonic() - started >= 3 * 0.5
        message = str(info.value)
        assert "failed to start 3 times in a row" in message
        assert "was not ready within start_timeout=0.5 s and was killed" in message
        assert "initializer block_forever()" in message
    assert child_pids() == before


@pytest.mark.parametrize(
    ("cancel", "cancel_futures"),
    [("future", False), ("shutdown", True)],
    ids=["future-cancelled", "cancel_futures"],
)
@pytest.mark.parametrize("wait", [True, False])
def test_shutdown_kills_a_worker_still_starting(cancel: str, cancel_futures: bool, wait: bool) -> None:
    """shutdown(), waiting or not, kills a worker that is still starting when no queued call needs
    it (its Future cancelled, or cancel_futures), rather than waiting for start_timeout."""
    with sync_rendezvous() as server:
        executor = ProcessExecutor(1, initializer=helpers.report_and_wait, initargs=(server.getsockname()[1],))
        future = executor.submit(helpers.add, 1)
        conn, pid = accept_started(server)  # the initializer runs, and waits for ever
        with conn:
            if cancel == "future":
                assert future.cancel()
            started = time.monotonic()
            executor.shutdown(wait=wait, cancel_futures=cancel_futures)
            assert wait_gone([pid], timeout=10)
            assert time.monotonic() - started < 10  # start_timeout is 20 s
            assert future.cancelled()


def test_shutdown_lets_a_starting_worker_run_the_queued_call_but_does_not_retry_a_failed_start() -> None:
    """Without cancel_futures, a starting worker is kept for the queued call; if it then fails to
    start, shutdown starts no other: the call fails with WorkerStartError and shutdown returns."""
    with sync_rendezvous() as server:
        executor = ProcessExecutor(
            1, initializer=helpers.report_and_wait, initargs=(server.getsockname()[1],), start_timeout=1.0
        )
        future = executor.submit(helpers.add, 1)
        conn, pid = accept_started(server)
        with conn:
            executor.shutdown(wait=True)
            assert isinstance(future.exception(0), WorkerStartError)
            assert process_gone(pid)
            server.setblocking(False)
            with pytest.raises(BlockingIOError):  # no second worker tried to start
                server.accept()[0].close()


def test_a_queued_call_runs_on_a_worker_that_finishes_starting_after_shutdown() -> None:
    """shutdown(wait=True) right after submit() (leaving a with block) still runs the call: the
    starting worker is needed, so it is not killed."""
    with sync_rendezvous() as server:
        executor = ProcessExecutor(1, initializer=helpers.report_and_wait, initargs=(server.getsockname()[1],))
        future = executor.submit(helpers.add, 1, b=2)
        conn, _pid = accept_started(server)
        done = threading.Thread(target=executor.shutdown)
        done.start()
        conn.sendall(b"!")  # the initializer returns
        conn.close()
        done.join(30)
        assert not done.is_alive()
        assert future.result(0) == 3


EXIT_WITH_A_HANGING_START = """
import sys
sys.path.insert(0, {tests!r})
import _process_helpers as helpers
from asyncbridge import ProcessExecutor

executor = ProcessExecutor(1, initializer=helpers.block_forever, start_timeout=0.5)
future = executor.submit(helpers.add, 1)
print("submitted", flush=True)
"""


def test_the_interpreter_exits_with_a_worker_that_never_starts() -> None:
    """A program that submits to a pool whose workers hang while starting, then exits without
    shutdown(), exits soon after start_timeout; it used to wait for ever."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", EXIT_WITH_A_HANGING_START.format(tests=str(TESTS_DIR))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "submitted\n"
    assert time.monotonic() - started < 30


EXIT_WITH_A_CALL_THAT_NEVER_ENDS = """
import asyncio, sys, threading, time
sys.path.insert(0, {tests!r})
import _process_helpers as helpers
from asyncbridge import ProcessExecutor

executor = ProcessExecutor(1)
threading.Thread(target=asyncio.run, args=(executor.run(helpers.block_forever),), daemon=True).start()
deadline = time.monotonic() + 30
while executor.statistics().running == 0 and time.monotonic() < deadline:
    time.sleep(0.01)
print(executor.statistics().running, flush=True)
"""


def test_the_interpreter_exit_stops_an_awaited_call_that_never_ends() -> None:
    """At exit, a call awaited on a loop that never finishes (in a daemon thread here) gets
    EXIT_GRACE, then its worker is killed: the exit is bounded, as for ThreadExecutor."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", EXIT_WITH_A_CALL_THAT_NEVER_ENDS.format(tests=str(TESTS_DIR))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n"
    assert time.monotonic() - started < 30


# -- multiprocessing start methods --------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        "spawn",
        "forkserver",
        pytest.param("fork", marks=pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")),
    ],
)
def test_mp_context_starts_workers_with_that_method(method: str) -> None:
    """mp_context starts workers through multiprocessing; results, errors and crashes behave the same."""
    with ProcessExecutor(1, mp_context=multiprocessing.get_context(method)) as executor:
        assert executor.submit(helpers.add, 1, b=2).result(60) == 3
        pid = executor.submit(helpers.getpid).result(20)
        assert pid != os.getpid()
        with pytest.raises(ValueError, match="boom"):
            executor.submit(helpers.raise_value_error, "boom").result(20)
        crashed = executor.submit(helpers.crash, "exit").exception(20)
        assert isinstance(crashed, WorkerCrashedError)
        assert crashed.exitcode == 3
        assert executor.submit(helpers.add, 2).result(60) == 2
    assert process_gone(pid)


MP_CONTEXT_WORKER_UNDER_W_ERROR = """
import multiprocessing, sys
sys.path.insert(0, {tests!r})
import _process_helpers as helpers
from asyncbridge import ProcessExecutor

if __name__ == "__main__":
    with ProcessExecutor(1, mp_context=multiprocessing.get_context("spawn")) as executor:
        print(executor.submit(helpers.add, 1, 2).result(60), flush=True)
"""


def test_an_mp_context_worker_closes_its_request_pipe_when_it_stops(tmp_path: Path) -> None:
    """A worker started through multiprocessing closes its request pipe when it is told to stop:
    no "unclosed file" ResourceWarning on its stderr under -W error (spawn passes -W on)."""
    script = tmp_path / "main.py"
    script.write_text(MP_CONTEXT_WORKER_UNDER_W_ERROR.format(tests=str(TESTS_DIR)))
    result = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "3\n"
    assert "ResourceWarning" not in result.stderr
