"""The pool's bookkeeping: which worker runs a call, crashes, recycling, shutdown and process lifetime,
and replies read on the awaiting loop."""

from __future__ import annotations

import asyncio
import gc
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import anyio
import pytest

import _process_helpers as helpers
from _process_testing import (
    TESTS_DIR,
    accept_started,
    pool_of,
    process_gone,
    rendezvous,
    sync_rendezvous,
    wait_gone,
    worker_of,
)
from asyncbridge import AsyncBridgeError, ExecutorShutdownError, ProcessExecutor, WorkerCrashedError

# -- which worker runs a call -------------------------------------------------------------


@pytest.mark.anyio
async def test_workers_are_reused_most_recently_used_first() -> None:
    """Calls go to the worker that finished last, so the others can reach their idle timeout."""
    async with ProcessExecutor(2) as executor, rendezvous() as meeting:
        first_done = anyio.Event()

        async def first_call() -> None:
            await executor.run(helpers.report_and_wait, meeting.port)
            first_done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(first_call)
            first, first_pid = await meeting.started()
            tg.start_soon(executor.run, helpers.report_and_wait, meeting.port)
            second, second_pid = await meeting.started()
            assert first_pid != second_pid
            await meeting.release(first)
            await first_done.wait()
            assert executor.statistics().running == 1
            await meeting.release(second)
        assert executor.statistics().running == 0
        assert [await executor.run(helpers.getpid) for _ in range(3)] == [second_pid] * 3


# -- crashes ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("how", "exitcode", "description"),
    [
        ("exit", 3, "exited with code 3"),
        ("sigkill", -9, r"killed by signal 9 \(SIGKILL\)"),
        ("segfault", -11, r"killed by signal 11 \(SIGSEGV\)"),
    ],
)
async def test_crash_fails_only_that_call_and_the_worker_is_replaced(how: str, exitcode: int, description: str) -> None:
    """A worker dying mid-call fails that call within a second with WorkerCrashedError (pid, exit
    code or signal); a call on another worker completes, and later calls run on a new worker."""
    async with ProcessExecutor(2) as executor, rendezvous() as meeting:
        async with anyio.create_task_group() as tg:
            survivor: list[object] = []

            async def run_survivor() -> None:
                survivor.append(await executor.run(helpers.report_and_wait, meeting.port, "survived"))

            tg.start_soon(run_survivor)
            conn, survivor_pid = await meeting.started()
            started = time.monotonic()
            with pytest.raises(WorkerCrashedError, match=description) as info:
                await executor.run(helpers.crash, how)
            assert time.monotonic() - started < 1.5  # includes starting the second worker
            error = info.value
            assert error.exitcode == exitcode
            assert error.signal == (-exitcode if exitcode < 0 else None)
            assert error.pid is not None
            assert error.pid != survivor_pid
            assert f"worker process {error.pid} died while running crash()" in str(error)
            await meeting.release(conn)
        assert survivor == ["survived"]
        later = {await executor.run(helpers.getpid) for _ in range(3)}
        assert error.pid not in later
        assert await executor.run(helpers.add, 1, 1) == 2
        assert executor.statistics().workers <= 2
        assert process_gone(error.pid)


def test_crash_fails_the_future_and_the_pool_keeps_working() -> None:
    """Through submit(), a crash fails that Future only; the pool is never broken."""
    with ProcessExecutor(1) as executor:
        for _ in range(3):
            crashed = executor.submit(helpers.crash, "exit")
            assert isinstance(crashed.exception(20), WorkerCrashedError)
            assert executor.submit(helpers.add, 2, 2).result(20) == 4


@pytest.mark.anyio
async def test_a_crash_is_caught_as_the_stdlib_pools_broken_process_pool() -> None:
    """WorkerCrashedError is a concurrent.futures BrokenProcessPool (and still an
    AsyncBridgeError): code written for ProcessPoolExecutor catches it unchanged."""
    async with ProcessExecutor(1) as executor:
        with pytest.raises(BrokenProcessPool) as info:
            await executor.run(helpers.crash, "exit")
        assert isinstance(info.value, WorkerCrashedError)
        assert isinstance(info.value, AsyncBridgeError)
        assert info.value.exitcode == 3
        assert isinstance(executor.submit(helpers.crash, "exit").exception(20), BrokenProcessPool)
        assert await executor.run(helpers.add, 2, 2) == 4


def test_call_sent_to_a_worker_that_just_died_idle_runs_on_another() -> None:
    """A call handed to an idle worker that died a moment before (the manager has not noticed
    yet) is not lost or blamed on a crash: it runs on a new worker."""
    with ProcessExecutor(1) as executor:
        pid = executor.submit(helpers.getpid).result(20)
        pool = pool_of(executor)
        # Hold the pool's (reentrant) lock so the manager cannot process the death
        # before the call is handed to the dead worker: the race made certain.
        # Once the process has exited (its pidfd says so), every thread of it is
        # gone and its end of the pipe closed.
        with pool.lock:
            os.kill(pid, signal.SIGKILL)
            assert wait_gone([pid])
            future = executor.submit(helpers.getpid)
        new_pid = future.result(20)
        assert new_pid != pid
        assert executor.statistics().failed == 0


# -- max_tasks_per_child ------------------------------------------------------------------


@pytest.mark.anyio
async def test_max_tasks_per_child_recycles_workers() -> None:
    """With max_tasks_per_child=2 each worker runs two calls, then is replaced and exits."""
    async with ProcessExecutor(1, max_tasks_per_child=2) as executor:
        pids = [await executor.run(helpers.getpid) for _ in range(5)]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]
    assert len(set(pids)) == 3
    assert wait_gone(pids)


# -- shutdown and process lifetime --------------------------------------------------------


def test_shutdown_wait_lets_running_calls_finish_then_no_worker_is_left() -> None:
    """shutdown(wait=True) blocks until running calls finish; then every worker process is gone."""
    with sync_rendezvous() as server:
        executor = ProcessExecutor(2)
        future = executor.submit(helpers.report_and_wait, server.getsockname()[1], "done")
        conn, busy_pid = accept_started(server)
        idle_pid = executor.submit(helpers.getpid).result(20)  # a second worker, idle from now on
        assert idle_pid != busy_pid
        done_when_shutdown_returned: list[bool] = []

        def close() -> None:
            executor.shutdown()
            done_when_shutdown_returned.append(future.done())

        closer = threading.Thread(target=close)
        closer.start()
        assert wait_gone([idle_pid])  # the shutdown has begun: it stopped the idle worker
        assert closer.is_alive()  # waiting for the running call
        assert not future.done()
        conn.sendall(b"!")
        conn.close()
        closer.join(20)
        assert not closer.is_alive()
        assert done_when_shutdown_returned == [True]
        assert future.result() == "done"
        assert process_gone(busy_pid)


def test_shutdown_cancel_futures_drops_queued_calls() -> None:
    """shutdown(cancel_futures=True) cancels the queued calls' Futures; the running one finishes."""
    with sync_rendezvous() as server:
        executor = ProcessExecutor(1)
        running = executor.submit(helpers.report_and_wait, server.getsockname()[1], "ran")
        conn, pid = accept_started(server)
        queued = [executor.submit(helpers.add, i) for i in range(3)]
        executor.shutdown(wait=False, cancel_futures=True)
        assert all(f.cancelled() for f in queued)
        conn.sendall(b"!")
        conn.close()
        assert running.result(20) == "ran"
        executor.shutdown()
        assert process_gone(pid)


def test_submit_after_shutdown_raises_runtime_error() -> None:
    """submit() after shutdown raises ExecutorShutdownError, a RuntimeError saying so."""
    executor = ProcessExecutor(1)
    executor.shutdown()
    with pytest.raises(RuntimeError, match="is shut down"):
        executor.submit(helpers.add, 1)


@pytest.mark.anyio
async def test_run_after_aclose_raises_and_queued_callers_get_shutdown_errors() -> None:
    """run() after aclose raises ExecutorShutdownError; a caller whose call was queued when
    shutdown(cancel_futures=True) ran gets ExecutorShutdownError too."""
    async with rendezvous() as meeting:
        executor = ProcessExecutor(1)
        errors: list[BaseException] = []

        async def queued() -> None:
            try:
                await executor.run(helpers.add, 1)
            except ExecutorShutdownError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.run, helpers.report_and_wait, meeting.port)
            conn, _ = await meeting.started()
            tg.start_soon(queued)
            await anyio.wait_all_tasks_blocked()
            executor.shutdown(wait=False, cancel_futures=True)
            await meeting.release(conn)
        assert len(errors) == 1
        await executor.aclose()
        with pytest.raises(ExecutorShutdownError, match="is shut down"):
            await executor.run(helpers.add, 1)


@pytest.mark.anyio
async def test_aclose_waits_for_running_calls_without_blocking_the_loop() -> None:
    """aclose() (async with) waits for running calls and workers to exit while the loop runs on."""
    async with rendezvous() as meeting:
        executor = ProcessExecutor(1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(executor.run, helpers.report_and_wait, meeting.port)
            conn, pid = await meeting.started()
            closed = anyio.Event()

            async def close() -> None:
                await executor.aclose()
                closed.set()

            tg.start_soon(close)
            await anyio.wait_all_tasks_blocked()
            assert not closed.is_set()
            await meeting.release(conn)  # only possible if the loop is not blocked
            with anyio.fail_after(20):
                await closed.wait()
        assert process_gone(pid)


def test_idle_workers_exit_after_the_idle_timeout() -> None:
    """Workers exit after idle_timeout seconds without calls, so an idle program holds no processes."""
    with ProcessExecutor(2, idle_timeout=0.1) as executor:
        pid = executor.submit(helpers.getpid).result(20)
        assert wait_gone([pid])
        assert pool_of(executor).all_exited.wait(10)  # the manager has reaped it and forgotten it
        assert executor.statistics().workers == 0
        assert executor.submit(helpers.add, 1).result(20) == 1  # a new worker starts


def test_executor_dropped_without_shutdown_stops_its_workers() -> None:
    """An executor garbage-collected without shutdown() stops its worker processes."""
    executor = ProcessExecutor(1)
    pid = executor.submit(helpers.getpid).result(20)
    del executor
    gc.collect()
    assert wait_gone([pid])


WORKER_OWNER_SCRIPT = """
import asyncio, multiprocessing, os, signal, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork() in a threaded process, when asked for
sys.path.insert(0, {tests!r})
import _process_helpers as helpers
import asyncbridge

context = None if {method!r} is None else multiprocessing.get_context({method!r})
executor = asyncbridge.ProcessExecutor(2, mp_context=context)
busy = executor.submit(helpers.report_and_wait, {port})  # holds one worker...
idle = executor.submit(helpers.getpid).result(20)  # ...so this one starts a second
default = asyncio.run(asyncbridge.to_process(helpers.getpid))
print(idle, default, flush=True)
sys.stdin.readline()  # the test has seen every worker alive
if {kill!r}:
    os.kill(os.getpid(), signal.SIGKILL)  # die without any cleanup
sys.exit(0)  # no shutdown(): the interpreter's exit must stop the workers
"""


@pytest.mark.parametrize(
    ("kill", "method"),
    [(False, None), (True, None), (False, "fork"), (True, "fork")],
    ids=["exit", "sigkill", "exit-fork", "sigkill-fork"],
)
def test_no_worker_outlives_the_interpreter(kill: bool, method: str | None) -> None:
    """Worker processes (busy or idle, of an executor or of to_process) do not outlive the
    interpreter, whether it exits normally without shutdown() or is killed; also when they were
    started with mp_context "fork", which copies the parent's ends of their pipes into them."""
    with sync_rendezvous() as server:
        script = WORKER_OWNER_SCRIPT.format(
            tests=str(TESTS_DIR), port=server.getsockname()[1], kill=kill, method=method
        )
        owner = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert owner.stdout is not None
        assert owner.stdin is not None
        conn, busy = accept_started(server)
        idle, default = map(int, owner.stdout.readline().split())
        pids = [idle, busy, default]
        assert idle != busy
        assert all(not process_gone(pid) for pid in pids)
        owner.stdin.write("go\n")
        owner.stdin.flush()
        if not kill:
            conn.sendall(b"!")  # the busy call finishes; exit waits for it, as the stdlib's does
        try:
            code = owner.wait(30)
            assert code == (-9 if kill else 0)
            assert wait_gone(pids)
        finally:
            conn.close()
            owner.stdin.close()
            owner.stdout.close()
            if owner.poll() is None:
                owner.kill()
                owner.wait()


FORKING_SCRIPT = """
import os, sys, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads: the point of the test
sys.path.insert(0, {tests!r})
import _process_helpers as helpers
import asyncbridge

executor = asyncbridge.ProcessExecutor(1)
parent_worker = executor.submit(helpers.getpid).result(20)
child = os.fork()
if child == 0:
    child_worker = executor.submit(helpers.getpid).result(20)
    executor.shutdown()
    print(child_worker, flush=True)
    os._exit(0)
_, status = os.waitpid(child, 0)
print(parent_worker, executor.submit(helpers.getpid).result(20), os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_starts_workers_of_its_own() -> None:
    """After os.fork(), the child's executor starts its own workers instead of sharing (and
    confusing) the parent's; the parent's keep serving the parent."""
    done = subprocess.run(
        [sys.executable, "-c", FORKING_SCRIPT.format(tests=str(TESTS_DIR))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    child_line, parent_line = done.stdout.splitlines()
    parent_worker, parent_again, child_status = map(int, parent_line.split())
    assert child_status == 0
    assert int(child_line) != parent_worker
    assert parent_again == parent_worker


# -- replies read on the awaiting loop (asyncio, uvloop) ----------------------------------


@pytest.mark.anyio
async def test_replies_are_decoded_on_the_awaiting_asyncio_loop_not_the_manager(
    anyio_backend_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On asyncio and uvloop a call that finds an idle worker has its reply read and decoded
    by the awaiting loop itself (no hop through the manager thread); on trio, by the manager."""
    decoded_in: list[str] = []
    loads = pickle.loads

    def recording_loads(data: Any, /, **kwargs: Any) -> Any:
        decoded_in.append(threading.current_thread().name)
        return loads(data, **kwargs)

    async with ProcessExecutor(2) as executor:
        await executor.run(helpers.add, 0)  # a worker is ready
        monkeypatch.setattr(pickle, "loads", recording_loads)
        assert [await executor.run(helpers.add, i, 1) for i in range(20)] == list(range(1, 21))
        with pytest.raises(ValueError, match="boom"):
            await executor.run(helpers.raise_value_error, "boom")
        monkeypatch.undo()
        stats = executor.statistics()
        assert (stats.running, stats.completed, stats.failed) == (0, 22, 1)
    expected = "asyncbridge-process-manager" if anyio_backend_name == "trio" else threading.current_thread().name
    assert decoded_in
    assert set(decoded_in) == {expected}


@pytest.mark.anyio
async def test_worker_killed_while_its_call_is_read_on_the_loop_fails_it_and_closes_its_pipe() -> None:
    """A worker killed mid-call whose reply pipe the loop watches fails the call with
    WorkerCrashedError at once; the loop stops watching the pipe and it is closed."""
    async with ProcessExecutor(1) as executor, rendezvous() as meeting:
        await executor.run(helpers.add, 0)  # a worker is ready: the call starts at once on it
        async with anyio.create_task_group() as tg:
            outcome: list[BaseException] = []

            async def doomed() -> None:
                try:
                    await executor.run(helpers.report_and_wait, meeting.port)
                except WorkerCrashedError as exc:
                    outcome.append(exc)

            tg.start_soon(doomed)
            conn, pid = await meeting.started()
            worker = worker_of(executor, pid)
            os.kill(pid, signal.SIGKILL)
            with anyio.fail_after(10):
                await meeting.closed(conn)
        assert len(outcome) == 1
        assert "killed by signal 9" in str(outcome[0])
        # Done by the time the failure arrived: the manager has the loop stop watching
        # the pipe (a callback on the loop) before it fails the call (another, later).
        assert worker.loop is None
        assert not worker.reply_closing
        with pytest.raises(OSError):
            os.fstat(worker.reply_fd)  # closed (and no other fd was opened since)
        assert await executor.run(helpers.add, 2, 3) == 5
        stats = executor.statistics()
        assert (stats.running, stats.failed) == (0, 1)


@pytest.mark.anyio
async def test_worker_killed_while_the_loop_reads_a_large_reply_fails_the_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker killed while its reply is half read (the rest taken over by the manager)
    fails the call with WorkerCrashedError; nothing hangs, later calls run."""
    async with ProcessExecutor(1) as executor:
        pid = await executor.run(helpers.getpid)
        worker = worker_of(executor, pid)
        replies = worker.replies  # the worker's reply pipe reader (framing.FrameReader)
        read = type(replies).read
        killed = threading.Event()

        def read_then_kill(self: Any, fd: int) -> tuple[list[bytearray], bool]:
            """Read as usual; once the read has begun a large reply, kill its worker."""
            got: tuple[list[bytearray], bool] = read(self, fd)
            if self is replies and self.large is not None and not killed.is_set():
                os.kill(pid, signal.SIGKILL)  # part of the reply read, the rest unsent
                killed.set()
            return got

        monkeypatch.setattr(type(replies), "read", read_then_kill)
        with pytest.raises(WorkerCrashedError), anyio.fail_after(30):
            await executor.run(helpers.return_argument, b"x" * (32 << 20))
        assert killed.is_set()
        assert worker.loop is None  # as in the test above: done before the call failed
        assert not worker.reply_closing
        assert await executor.run(helpers.add, 1, 1) == 2


@pytest.mark.anyio
async def test_cancelled_call_read_on_the_loop_stops_watching_its_pipe() -> None:
    """Cancelling a call whose reply the loop was to read removes the loop's reader at once."""
    async with ProcessExecutor(1) as executor, rendezvous() as meeting:
        await executor.run(helpers.add, 0)
        with anyio.move_on_after(20) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(executor.run, helpers.report_and_wait, meeting.port)
                conn, pid = await meeting.started()
                worker = worker_of(executor, pid)
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught
        assert worker.loop is None  # removed in the cancelled call's own thread, at once
        assert await meeting.closed(conn)
        assert [await executor.run(helpers.add, i) for i in range(3)] == [0, 1, 2]


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_a_loop_closed_while_it_was_to_read_a_reply_does_not_hold_the_worker(kind: str) -> None:
    """A loop closed (without cancelling) while a call's reply was to be read on it: the
    manager takes the pipe over, the worker is freed and later calls run on it."""
    with ProcessExecutor(1) as executor, sync_rendezvous() as server:
        loop = _new_loop(kind)
        try:
            loop.run_until_complete(executor.run(helpers.add, 0))  # a worker is ready
            loop.run_until_complete(executor.run(helpers.add, 0))  # its reply was read on the loop
            task = loop.create_task(executor.run(helpers.report_and_wait, server.getsockname()[1]))
            # Run the loop (its reader watching the worker's pipe) until the call has started.
            conn, pid = loop.run_until_complete(loop.run_in_executor(None, accept_started, server))
        finally:
            loop.close()
        with conn:  # closed even if an assertion fails, which ends the call as well
            assert executor.statistics().running == 1
            conn.sendall(b"!")  # the call returns, with nobody left to read its reply on the loop
        del task
        assert executor.submit(helpers.add, 1, 2).result(10) == 3
        assert executor.submit(helpers.getpid).result(10) == pid
        assert executor.statistics().running == 0


@pytest.mark.parametrize("kind", ["asyncio", "uvloop"])
def test_shutdown_wait_blocking_the_loop_that_reads_a_reply_does_not_deadlock(kind: str) -> None:
    """``with ProcessExecutor()`` left on the loop thread while a call's reply was to be read
    on that (now blocked) loop: the manager reads it, the worker exits, the call completes."""

    async def main() -> object:
        with ProcessExecutor(1) as executor:
            await executor.run(helpers.add, 0)
            await executor.run(helpers.add, 0)
            task = asyncio.ensure_future(executor.run(helpers.add, 4, 5))
            await asyncio.sleep(0)  # one step of the task: the call is sent, the loop watches its pipe
            assert executor.statistics().running == 1
            started = time.monotonic()
        assert time.monotonic() - started < 5  # shutdown(wait=True) returned
        return await task

    loop = _new_loop(kind)
    try:
        assert loop.run_until_complete(main()) == 9
    finally:
        loop.close()
