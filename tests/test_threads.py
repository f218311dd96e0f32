"""ThreadExecutor: the bound, lazy threads, the concurrent.futures API, statistics, shutdown."""

from __future__ import annotations

import concurrent.futures as cf
import contextvars
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncbridge
from _sync import wait_thread_event
from asyncbridge import (
    DEFAULT_MAX_THREADS,
    ExecutorShutdownError,
    ThreadExecutor,
    async_wrap,
    get_default_executor,
    set_default_executor,
)

tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="none")


def worker_threads(executor_name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{executor_name}-")]


# -- construction, and threads started on demand and retired when idle --------------


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, "max_workers must be at least 1, got 0"),
        (-3, ValueError, "max_workers must be at least 1, got -3"),
        ("4", TypeError, "max_workers must be an int, got str '4'"),
        (2.0, TypeError, "max_workers must be an int, got float 2.0"),
        (True, TypeError, "max_workers must be an int, got bool True"),
        (None, TypeError, "max_workers must be an int, got NoneType None"),
    ],
)
def test_rejects_bad_max_workers(value: Any, error: type[Exception], message: str) -> None:
    """max_workers below 1 is a ValueError and a non-int a TypeError, both naming the argument."""
    with pytest.raises(error, match=message):
        ThreadExecutor(value)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [({"idle_timeout": 0}, ValueError), ({"idle_timeout": "1"}, TypeError), ({"name": 3}, TypeError)],
)
def test_rejects_bad_options(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """idle_timeout and name are checked when the executor is made."""
    with pytest.raises(error, match=next(iter(kwargs))):
        ThreadExecutor(2, **kwargs)


def test_starts_no_thread_until_used() -> None:
    """A new executor holds no thread; the first call starts one."""
    with ThreadExecutor(4, name="lazy-pool") as executor:
        assert worker_threads("lazy-pool") == []
        assert executor.submit(int, "5").result(10) == 5
        assert len(worker_threads("lazy-pool")) == 1
        assert executor.statistics().workers == 1


def test_idle_threads_exit_after_the_idle_timeout() -> None:
    """Worker threads exit once idle for idle_timeout, so an idle program holds no extra threads."""
    executor = ThreadExecutor(3, name="idle-pool", idle_timeout=0.05)
    barrier = threading.Barrier(3, timeout=10)
    futures = [executor.submit(barrier.wait) for _ in range(3)]
    cf.wait(futures, timeout=10)
    threads = worker_threads("idle-pool")
    assert len(threads) == 3
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    assert executor.statistics().workers == 0
    assert executor.submit(int, "7").result(10) == 7  # and it grows again on demand
    executor.shutdown()


def test_calls_submitted_as_the_only_worker_times_out_always_run() -> None:
    """A call submitted while the only worker is exiting on its idle timeout still runs."""
    executor = ThreadExecutor(1, idle_timeout=0.001)
    for i in range(300):
        assert executor.submit(pow, i, 2).result(10) == i * i
        threading.Event().wait(0.001)  # let the worker reach its idle timeout, or nearly
    executor.shutdown()


def test_failed_thread_start_fails_the_call_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    """When no worker thread can be started, the call fails with RuntimeError rather than waiting forever."""

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    executor = ThreadExecutor(2)
    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(RuntimeError, match="can't start new thread"):
        executor.submit(int).result(10)
    monkeypatch.undo()
    assert executor.submit(int, "3").result(10) == 3
    executor.shutdown()


# -- the concurrent.futures API ----------------------------------------------------


def test_submit_map_and_shutdown_like_the_stdlib() -> None:
    """submit, map and shutdown behave as ThreadPoolExecutor's do."""
    with ThreadExecutor(2) as executor:
        assert executor.submit(pow, 2, 10).result(10) == 1024
        assert list(executor.map(abs, [-1, -2, 3])) == [1, 2, 3]
        failing = executor.submit(int, "not a number")
        assert isinstance(failing.exception(10), ValueError)
        assert isinstance(executor, cf.Executor)
    with pytest.raises(RuntimeError, match="is shut down"):
        executor.submit(int)


def test_submit_copies_the_callers_context() -> None:
    """A function submitted through submit() sees the submitter's context variables."""
    token = tag.set("from-submitter")
    try:
        with ThreadExecutor(1) as executor:
            assert executor.submit(tag.get).result(10) == "from-submitter"
    finally:
        tag.reset(token)


def test_cancel_future_of_queued_call() -> None:
    """A queued call's Future can be cancelled and the function then never runs."""
    release = threading.Event()
    ran: list[int] = []
    with ThreadExecutor(1) as executor:
        executor.submit(release.wait, 10)
        queued = executor.submit(ran.append, 1)
        assert queued.cancel()
        release.set()
    assert queued.cancelled()
    assert ran == []


def test_shutdown_cancel_futures_drops_queued_calls() -> None:
    """shutdown(cancel_futures=True) cancels queued calls and lets running ones finish."""
    release = threading.Event()
    started = threading.Event()
    executor = ThreadExecutor(1)

    def running() -> str:
        started.set()
        release.wait(10)
        return "finished"

    first = executor.submit(running)
    started.wait(10)
    queued = [executor.submit(int, "1") for _ in range(3)]
    executor.shutdown(wait=False, cancel_futures=True)
    release.set()
    assert first.result(10) == "finished"
    assert all(f.cancelled() for f in queued)
    executor.shutdown(wait=True)
    assert executor.statistics().workers == 0


def test_shutdown_wait_lets_queued_calls_finish() -> None:
    """shutdown(wait=True) runs calls already queued, then returns with every thread gone."""
    executor = ThreadExecutor(2, name="drain-pool")
    futures = [executor.submit(pow, i, 2) for i in range(20)]
    executor.shutdown(wait=True)
    assert [f.result(0) for f in futures] == [i * i for i in range(20)]
    assert all(not t.is_alive() for t in worker_threads("drain-pool"))


# -- async API ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_run_returns_result_in_a_worker_thread() -> None:
    """executor.run(fn, *args, **kwargs) runs fn in a worker thread and returns its result."""
    async with ThreadExecutor(2) as executor:
        ident = await executor.run(threading.get_ident)
        assert ident != threading.get_ident()
        assert await executor.run(int, "ff", base=16) == 255


@pytest.mark.anyio
async def test_run_after_shutdown_raises() -> None:
    """run() on a shut-down executor raises ExecutorShutdownError (a RuntimeError) saying so."""
    executor = ThreadExecutor(1)
    await executor.aclose()
    with pytest.raises(ExecutorShutdownError, match="is shut down") as info:
        await executor.run(int)
    assert isinstance(info.value, RuntimeError)


@pytest.mark.anyio
async def test_queued_caller_gets_shutdown_error_on_cancel_futures() -> None:
    """An awaited call still queued at shutdown(cancel_futures=True) raises ExecutorShutdownError."""
    release = threading.Event()
    started = threading.Event()
    errors: list[BaseException] = []
    executor = ThreadExecutor(1)

    def block() -> None:
        started.set()
        release.wait(10)

    async def queued() -> None:
        try:
            await executor.run(int)
        except ExecutorShutdownError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(executor.run, block)
        await wait_thread_event(started)
        tg.start_soon(queued)
        await anyio.wait_all_tasks_blocked()
        executor.shutdown(wait=False, cancel_futures=True)
        release.set()
    assert len(errors) == 1
    assert "shut down before this call started" in str(errors[0])


# -- statistics ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_statistics_show_running_queued_and_totals() -> None:
    """statistics() reports running, queued, completed and failed calls and the time spent queued."""
    release = threading.Event()
    started = threading.Event()
    executor = ThreadExecutor(1)

    def block() -> None:
        started.set()
        release.wait(10)

    async def fail() -> None:
        with pytest.raises(ValueError):
            await executor.run(int, "x")

    async with anyio.create_task_group() as tg:
        tg.start_soon(executor.run, block)
        await wait_thread_event(started)
        tg.start_soon(executor.run, int)
        tg.start_soon(fail)
        await anyio.wait_all_tasks_blocked()
        stats = executor.statistics()
        assert (stats.max_workers, stats.workers, stats.running, stats.queued) == (1, 1, 1, 2)
        release.set()
    stats = executor.statistics()
    assert (stats.running, stats.queued, stats.completed, stats.failed) == (0, 0, 3, 1)
    assert stats.max_wait_time > 0
    assert stats.total_wait_time >= stats.max_wait_time
    with pytest.raises(AttributeError):
        stats.running = 5  # type: ignore[misc]
    await executor.aclose()


# -- the bound, under random mixes ------------------------------------------------------

OPS = st.lists(
    st.tuples(st.sampled_from(["ok", "raise", "cancel", "cancel-queued"]), st.booleans()),
    min_size=1,
    max_size=24,
)


@pytest.mark.anyio
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(k=st.integers(1, 4), ops=OPS, limit=st.one_of(st.none(), st.integers(1, 3)))
async def test_bound_holds_and_slots_return_under_random_mixes(
    k: int, ops: list[tuple[str, bool]], limit: int | None
) -> None:
    """Random mixes of calls, errors and cancellations never run more than k at once and free every slot."""
    executor = ThreadExecutor(k)
    gate = threading.Event()
    lock = threading.Lock()
    now = peak = 0
    room = min(k, limit or k)
    probe = threading.Barrier(room, timeout=10)

    def work(kind: str, wait: bool) -> str:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        try:
            if wait:
                gate.wait(10)
            if kind == "probe":
                probe.wait()
            if kind == "raise":
                raise ValueError(kind)
            return kind
        finally:
            with lock:
                now -= 1

    wrapped = async_wrap(executor=executor, limit=limit)(work)
    scopes: list[anyio.CancelScope] = []
    outcomes: list[str] = []

    async def one(kind: str, wait: bool) -> None:
        with anyio.CancelScope() as scope:
            if kind.startswith("cancel"):
                scopes.append(scope)
            try:
                outcomes.append(await wrapped(kind, wait))
            except ValueError:
                outcomes.append("raised")

    async with anyio.create_task_group() as tg:
        for kind, wait in ops:
            tg.start_soon(one, kind, wait)
        await anyio.wait_all_tasks_blocked()
        for scope in scopes:
            scope.cancel()
        await anyio.wait_all_tasks_blocked()
        gate.set()
    # Every slot came back: `room` calls can again be inside at once (else the barrier breaks).
    async with anyio.create_task_group() as tg:
        for _ in range(room):
            tg.start_soon(wrapped, "probe", False)
    # Abandoned calls may still be finishing in their threads: wait for them.
    executor.shutdown(wait=False)
    await anyio.to_thread.run_sync(executor._all_exited.wait, 10)
    stats = executor.statistics()
    assert peak <= room
    assert (stats.running, stats.queued, stats.workers) == (0, 0, 0)
    assert outcomes.count("ok") == sum(kind == "ok" for kind, _ in ops)
    assert outcomes.count("raised") == sum(kind == "raise" for kind, _ in ops)


# -- several event loops at once ------------------------------------------------------


def test_one_executor_serves_several_loops_in_threads_within_its_bound() -> None:
    """The same executor serves asyncio, uvloop and trio loops in several threads, within its bound."""
    executor = ThreadExecutor(3)
    lock = threading.Lock()
    now = peak = 0

    def work(i: int) -> int:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        threading.Event().wait(0.002)
        with lock:
            now -= 1
        return i

    async def many() -> list[int]:
        results: list[int] = []

        async def one(i: int) -> None:
            results.append(await executor.run(work, i))

        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(one, i)
        return sorted(results)

    outputs: list[list[int]] = []
    backends = [("asyncio", {}), ("asyncio", {"use_uvloop": True}), ("trio", {}), ("asyncio", {})]
    threads = [
        threading.Thread(target=lambda b=b, o=o: outputs.append(anyio.run(many, backend=b, backend_options=o)))
        for b, o in backends
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outputs == [list(range(50))] * 4
    assert peak <= 3
    executor.shutdown()


# -- the default executor ---------------------------------------------------------------


def test_default_executor_has_40_threads() -> None:
    """The default executor allows DEFAULT_MAX_THREADS (40) threads, as anyio does."""
    assert DEFAULT_MAX_THREADS == 40
    if "ASYNCBRIDGE_MAX_THREADS" not in os.environ:
        assert get_default_executor().max_workers == 40


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_environment_variable_sets_the_default_size() -> None:
    """ASYNCBRIDGE_MAX_THREADS sets the default executor's size."""
    out = _run_python(
        "import asyncbridge; print(asyncbridge.get_default_executor().max_workers)",
        ASYNCBRIDGE_MAX_THREADS="7",
    )
    assert out.stdout.strip() == "7", out.stderr


def test_bad_environment_variable_is_a_clear_error() -> None:
    """A bad ASYNCBRIDGE_MAX_THREADS raises ValueError naming the variable at first use."""
    out = _run_python("import asyncbridge; asyncbridge.get_default_executor()", ASYNCBRIDGE_MAX_THREADS="lots")
    assert "ValueError: ASYNCBRIDGE_MAX_THREADS must be a whole number" in out.stderr
    out = _run_python("import asyncbridge; asyncbridge.get_default_executor()", ASYNCBRIDGE_MAX_THREADS="0")
    assert "ValueError: ASYNCBRIDGE_MAX_THREADS must be at least 1" in out.stderr


@pytest.mark.anyio
async def test_set_default_executor_is_used_by_async_wrap_and_to_thread() -> None:
    """set_default_executor() changes where async_wrap (decorated earlier) and to_thread run."""

    @async_wrap
    def name() -> str:
        return threading.current_thread().name

    custom = ThreadExecutor(2, name="custom-default")
    old = set_default_executor(custom)
    try:
        assert (await name()).startswith("custom-default-")
        assert (await asyncbridge.to_thread(name.__wrapped__)).startswith("custom-default-")  # type: ignore[attr-defined]
    finally:
        assert old is not None
        set_default_executor(old)
        await custom.aclose()
    assert not (await name()).startswith("custom-default-")


def test_set_default_executor_rejects_other_executors() -> None:
    """set_default_executor() takes only a ThreadExecutor, and says what to do otherwise."""
    with cf.ThreadPoolExecutor(1) as pool, pytest.raises(TypeError, match="expects a ThreadExecutor"):
        set_default_executor(pool)  # type: ignore[arg-type]


# -- interpreter exit ---------------------------------------------------------------


def _run_child(code: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    import time

    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started


@pytest.mark.parametrize("executor", ["ThreadExecutor(2)", "get_default_executor()"])
def test_submitted_work_completes_before_the_interpreter_exits(executor: str) -> None:
    """As concurrent.futures promises: the program does not exit until submit()ted and map()ped work is done."""
    code = f"""
import os, time
from asyncbridge import ThreadExecutor, get_default_executor

def job(n):
    time.sleep(0.2)
    os.write(1, b"job %d\\n" % n)  # one write: print() from three threads can interleave its pieces

executor = {executor}
executor.submit(job, 1)
executor.map(job, [2, 3])
"""
    result, _ = _run_child(code)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.split("\n")) == ["", "job 1", "job 2", "job 3"]


def test_an_abandoned_call_does_not_hold_the_exit_past_the_grace() -> None:
    """A call whose awaiting caller timed out runs on, but exit waits for it EXIT_GRACE at most (0.5 s here)."""
    code = """
import asyncio, threading, time
import asyncbridge
from asyncbridge import _threads

_threads.EXIT_GRACE = 0.5

@asyncbridge.async_wrap
def stuck():
    threading.Event().wait(120)

async def main():
    try:
        await asyncio.wait_for(stuck(), 0.1)
    except asyncio.TimeoutError:  # not the builtin TimeoutError before 3.11
        print("timed out", flush=True)

asyncio.run(main())
"""
    result, elapsed = _run_child(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "timed out\n"
    assert elapsed < 20  # not the call's 120 s


def test_an_abandoned_call_that_ends_within_the_grace_is_waited_for() -> None:
    code = """
import asyncio, time
import asyncbridge

@asyncbridge.async_wrap
def slow():
    time.sleep(0.5)
    print("slow finished", flush=True)

async def main():
    try:
        await asyncio.wait_for(slow(), 0.05)
    except asyncio.TimeoutError:  # not the builtin TimeoutError before 3.11
        print("timed out", flush=True)

asyncio.run(main())
"""
    result, _ = _run_child(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "timed out\nslow finished\n"


# -- as asyncio's default executor -----------------------------------------------------


async def test_asyncio_to_thread_runs_in_a_thread_executor_set_as_the_loops_default(
    anyio_backend: tuple[str, dict[str, object]],
) -> None:
    """loop.set_default_executor() accepts only ThreadPoolExecutors (3.11+): a ThreadExecutor is one."""
    if anyio_backend[0] != "asyncio":
        pytest.skip("trio has no default executor")
    import asyncio
    import warnings

    loop = asyncio.get_running_loop()
    executor = ThreadExecutor(3, name="loop-default")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 3.10 warns about executors that are not ThreadPoolExecutors
        loop.set_default_executor(executor)
    try:
        names = [await asyncio.to_thread(lambda: threading.current_thread().name) for _ in range(3)]
        names.append(await loop.run_in_executor(None, lambda: threading.current_thread().name))
        assert all(name.startswith("loop-default-") for name in names)
        assert executor.statistics().completed == 4
    finally:
        await loop.shutdown_default_executor()  # what asyncio.run does at the end
    assert executor.statistics().workers == 0  # shut down, its threads gone


# -- map(buffersize=...), Python 3.14's, on every Python ------------------------------


class Drawn:
    """An endless iterable that counts the items taken from it."""

    def __init__(self) -> None:
        self.count = 0

    def __iter__(self) -> Iterator[int]:
        while True:
            self.count += 1
            yield self.count - 1


def test_map_with_buffersize_submits_only_that_many_ahead() -> None:
    """map(buffersize=n) takes n items at once and one more per result, as 3.14's Executor.map:
    an endless iterable is mapped lazily."""
    items = Drawn()
    with ThreadExecutor(2) as executor:
        results = executor.map(abs, items, buffersize=2)
        assert items.count == 2
        assert next(results) == 0
        assert items.count == 3  # one more submitted before the first result was taken
        assert [next(results) for _ in range(4)] == [1, 2, 3, 4]
        assert items.count == 7
        results.close()


def test_map_with_buffersize_cancels_what_has_not_started_when_closed() -> None:
    """Closing the iterator cancels the buffered calls that have not started, as the stdlib does."""
    started, release = threading.Event(), threading.Event()
    ran: list[int] = []

    def record(x: int) -> int:
        ran.append(x)
        if x == 1:
            started.set()
            assert release.wait(10)
        return x

    executor = ThreadExecutor(1)
    results = executor.map(record, range(100), buffersize=3)
    assert next(results) == 0
    assert started.wait(10)  # 1 runs (and waits); 2 and 3 are queued
    results.close()
    release.set()
    executor.shutdown(wait=True)
    assert ran == [0, 1]


@pytest.mark.parametrize(
    ("buffersize", "error", "message"),
    [
        (0, ValueError, r"^buffersize must be None or > 0, got 0$"),
        (-1, ValueError, r"^buffersize must be None or > 0, got -1$"),
        (2.0, TypeError, r"^buffersize must be an integer or None, got float 2.0$"),
        ("2", TypeError, r"^buffersize must be an integer or None, got str '2'$"),
        (True, TypeError, r"^buffersize must be an integer or None, got bool True$"),
    ],
)
def test_map_rejects_a_bad_buffersize(buffersize: Any, error: type[Exception], message: str) -> None:
    """buffersize is refused as 3.14 refuses it (in its words), before anything is submitted."""
    with ThreadExecutor(1) as executor, pytest.raises(error, match=message):
        executor.map(abs, Drawn(), buffersize=buffersize)
    assert executor.statistics().completed == 0
