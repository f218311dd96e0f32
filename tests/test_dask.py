"""asyncbridge.dask.DaskExecutor against a real Dask cluster: results, no deduplication, cancellation
released on the scheduler, dead workers, max_pending back-pressure, connecting, shutting down, bad input.

One LocalCluster (two worker processes, one thread each, on 127.0.0.1) serves the whole module; its
scheduler is inspected through a synchronous Client of the test's own, called off the event loop.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import distributed
import pytest

import _dask_helpers as helpers
from asyncbridge import AsyncBridgeError, ExecutorShutdownError, WorkerCrashedError, async_wrap, to_thread
from asyncbridge.dask import DaskExecutor

ROOT = Path(__file__).resolve().parent.parent

# -- the cluster ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """The module's Dask cluster, started once (it takes a second or so) on helpers.SCHEDULER_PORT."""
    with distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=1,
        dashboard_address=":0",
        host="127.0.0.1",
        scheduler_port=helpers.SCHEDULER_PORT,
    ) as local_cluster:
        yield local_cluster
        helpers.DASK.shutdown()  # its client goes before the cluster it talks to


@pytest.fixture(scope="module")
def inspector(cluster: Any) -> Iterator[Any]:
    """The test's own synchronous client, to look at the scheduler (never the executor's)."""
    with distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
async def workers(inspector: Any) -> Any:
    """Both workers up (a test before may have killed one; its nanny restarts it): the inspector."""
    await to_thread(inspector.wait_for_workers, 2, 60)
    return inspector


@pytest.fixture
async def executor(cluster: Any) -> Any:
    """A fresh executor on the cluster, made from its address, shut down after the test."""
    async with DaskExecutor(cluster.scheduler_address, connect_timeout=60) as dask_executor:
        yield dask_executor


async def on_scheduler(inspector: Any, fn: Any, *args: Any) -> Any:
    """Run ``fn(*args, dask_scheduler=...)`` on the scheduler, off the event loop."""
    return await to_thread(lambda: inspector.run_on_scheduler(fn, *args))


async def wait_until_gone(inspector: Any, prefix: str) -> None:
    """Wait until the scheduler knows no task whose key starts with ``prefix`` (no event exists for it)."""
    deadline = time.monotonic() + 30
    while await on_scheduler(inspector, helpers.keys_starting_with, prefix):
        assert time.monotonic() < deadline, f"the scheduler still holds {prefix}* tasks"
        await anyio.sleep(0.05)


# -- (a) the same decorated function through every executor -------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "wrapped",
    [helpers.count_primes_in_threads, helpers.count_primes_in_processes, helpers.count_primes_on_dask],
    ids=["threads", "processes", "dask"],
)
async def test_decorated_cpu_function_runs_through_every_executor(cluster: Any, wrapped: Any) -> None:
    """A module-level @async_wrap(executor=...) CPU-bound function gives the same results whichever
    executor runs it: the Dask one sends the decorated function by reference."""
    async with anyio.create_task_group() as tg:
        results: dict[int, int] = {}

        async def one(limit: int) -> None:
            results[limit] = await wrapped(limit)

        for limit in (100, 1000, 5000):
            tg.start_soon(one, limit)
    assert results == {100: 25, 1000: 168, 5000: 669}


@pytest.mark.anyio
async def test_a_decorated_function_is_sent_by_reference(cluster: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker imports the decorated function's module and finds it there (by name), rather than
    receiving a copy of it and of the globals it reads (cloudpickle's way for a name that finds a wrapper)."""
    monkeypatch.setattr(helpers, "MARK", "changed in the test process")
    assert await helpers.read_mark() == "as imported"


@pytest.mark.anyio
async def test_calls_run_in_the_dask_worker_processes(executor: DaskExecutor, workers: Any) -> None:
    """A call runs in a Dask worker process, not in this one; run(), submit() and map() all work."""
    worker_pids = set((await to_thread(workers.run, os.getpid)).values())
    pid = await executor.run(helpers.whoami)
    assert pid in worker_pids
    assert pid != os.getpid()
    assert await to_thread(executor.submit(helpers.add_one, 41).result, 30) == 42
    assert await to_thread(lambda: list(executor.map(helpers.add_one, range(5), timeout=30))) == [1, 2, 3, 4, 5]


@pytest.mark.anyio
async def test_the_functions_exception_reaches_the_caller(executor: DaskExecutor) -> None:
    """An exception raised by the function is raised to the awaiting caller, same type and message."""
    with pytest.raises(ValueError, match=r"^from the worker$"):
        await executor.run(helpers.raise_value_error, "from the worker")
    assert executor.statistics().failed == 1


@pytest.mark.anyio
async def test_an_unpicklable_argument_fails_the_call(executor: DaskExecutor) -> None:
    """An argument Dask cannot serialize fails that call with TypeError (no hang); the next call works."""
    import threading

    with anyio.fail_after(60), pytest.raises(TypeError, match=r"serialize|pickle"):
        await executor.run(helpers.add_one, threading.Lock())
    assert await executor.run(helpers.add_one, 1) == 2


# -- (b) no deduplication, no stolen keyword arguments ---------------------------------------


@pytest.mark.anyio
async def test_equal_calls_both_run(executor: DaskExecutor, tmp_path: Path) -> None:
    """Two concurrent calls with equal arguments both run (Dask's default pure=True would run one)."""
    log = tmp_path / "runs.log"
    wrapped = async_wrap(executor=executor)(helpers.append_line)
    results: list[str] = []

    async def one() -> None:
        results.append(await wrapped(str(log), "same"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)
    assert log.read_text().splitlines() == ["same", "same"]
    assert len(set(results)) == 2


@pytest.mark.anyio
async def test_keyword_arguments_named_like_submit_options_reach_the_function(executor: DaskExecutor) -> None:
    """key=, priority=, workers=, pure=, retries=, resources= are the function's, never taken by Dask."""
    options = {
        "key": "my-key",
        "priority": 7,
        "workers": "no such worker",
        "pure": "yes",
        "retries": "many",
        "resources": "none",
    }
    assert await executor.run(helpers.echo_options, **options) == options


# -- (c) cancellation, timeouts, dead workers ---------------------------------------------------


@pytest.mark.anyio
async def test_cancelling_a_running_call_releases_its_task_on_the_scheduler(
    executor: DaskExecutor, workers: Any
) -> None:
    """Cancelling the await of a running call ends it at once and the scheduler forgets the task
    (the worker finishes the function: Dask cannot interrupt it)."""
    started, gate = f"started-{uuid.uuid4().hex}", f"gate-{uuid.uuid4().hex}"
    try:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(executor.run, helpers.gated, started, gate)
                assert await to_thread(distributed.Event(started, client=workers).wait, 60)
                assert await on_scheduler(workers, helpers.keys_starting_with, "gated-")
                scope.cancel()
        assert scope.cancelled_caught
        await wait_until_gone(workers, "gated-")
        assert executor.statistics().running == 0
    finally:
        await to_thread(distributed.Event(gate, client=workers).set)


@pytest.mark.anyio
async def test_a_timed_out_call_is_released_and_one_still_queued_never_runs(
    cluster: Any, workers: Any, tmp_path: Path
) -> None:
    """With max_pending=1, a timeout ends the await of a running call (its task is released on the
    scheduler) and of a call waiting for room (it is never sent)."""
    started, gate = f"started-{uuid.uuid4().hex}", f"gate-{uuid.uuid4().hex}"
    log = tmp_path / "never.log"
    async with DaskExecutor(cluster.scheduler_address, max_pending=1) as executor:
        queued = async_wrap(executor=executor, timeout=0.2)(helpers.append_line)
        try:
            async with anyio.create_task_group() as tg:

                async def hold_the_slot(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
                    with anyio.CancelScope() as scope:
                        task_status.started(scope)
                        await executor.run(helpers.gated, started, gate)
                    assert scope.cancelled_caught

                running_scope = await tg.start(hold_the_slot)
                assert await to_thread(distributed.Event(started, client=workers).wait, 60)
                with pytest.raises(TimeoutError, match="append_line"):
                    await queued(str(log), "never")
                assert executor.statistics().queued == 0
                running_scope.deadline = anyio.current_time()  # the running call's await times out now
            await wait_until_gone(workers, "gated-")
            assert not await on_scheduler(workers, helpers.keys_starting_with, "append_line-")
            assert not log.exists()
        finally:
            await to_thread(distributed.Event(gate, client=workers).set)


@pytest.mark.anyio
async def test_a_killed_worker_is_survived(executor: DaskExecutor, workers: Any, tmp_path: Path) -> None:
    """A worker process killed during a call: Dask runs the task again on a live worker."""
    assert await executor.run(helpers.die_once, str(tmp_path / "marker")) == "survived"
    assert (tmp_path / "marker").read_text() == "died"


@pytest.fixture
async def no_allowed_failures(workers: Any) -> Any:
    """The scheduler gives up on a task at its first dead worker (KilledWorker), for the test's length."""
    old = await on_scheduler(workers, helpers.set_allowed_failures, 0)
    yield workers
    await on_scheduler(workers, helpers.set_allowed_failures, old)


@pytest.mark.anyio
async def test_workers_dying_raises_worker_crashed_naming_the_call(
    executor: DaskExecutor, no_allowed_failures: Any
) -> None:
    """When Dask gives up (KilledWorker), the caller gets WorkerCrashedError naming the function."""
    with pytest.raises(WorkerCrashedError, match=r"die_always\(\)") as caught:
        await executor.run(helpers.die_always)
    assert "retries" in str(caught.value)


@pytest.mark.anyio
async def test_retries_submits_a_call_again_after_its_workers_died(
    cluster: Any, no_allowed_failures: Any, tmp_path: Path
) -> None:
    """retries=1: a call whose worker died (and Dask gave up) is submitted again, and returns."""
    async with DaskExecutor(cluster.scheduler_address, retries=1) as executor:
        assert await executor.run(helpers.die_once, str(tmp_path / "marker")) == "survived"


# -- (d) max_pending ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_max_pending_bounds_the_calls_on_the_cluster(cluster: Any, workers: Any) -> None:
    """1,000 small calls with max_pending=50: the scheduler never holds more than 50 unfinished at once,
    every caller gets its result, and the waiting shows in statistics()."""
    name = f"{helpers.InFlight.name}-{uuid.uuid4().hex}"
    await to_thread(lambda: workers.register_plugin(helpers.InFlight("add_one-"), name=name))
    try:
        async with DaskExecutor(cluster.scheduler_address, max_pending=50) as executor:
            wrapped = async_wrap(executor=executor)(helpers.add_one)
            results: dict[int, int] = {}
            peak_queued = 0

            async def one(i: int) -> None:
                nonlocal peak_queued
                peak_queued = max(peak_queued, executor.statistics().queued)
                results[i] = await wrapped(i)

            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    for i in range(1000):
                        tg.start_soon(one, i)
            assert results == {i: i + 1 for i in range(1000)}
            stats = executor.statistics()
            assert (stats.max_workers, stats.completed, stats.running, stats.queued) == (50, 1000, 0, 0)
            assert stats.max_wait_time > 0
            assert peak_queued > 0

        def report(dask_scheduler: Any) -> tuple[int, int, int]:
            plugin = dask_scheduler.plugins[name]
            return plugin.peak, plugin.seen, len(plugin.active)

        peak, seen, active = await on_scheduler(workers, report)
        assert seen == 1000
        assert 1 < peak <= 50
        assert active == 0
    finally:
        await to_thread(lambda: workers.unregister_scheduler_plugin(name))


# -- clients, connecting, shutting down -------------------------------------------------------------


@pytest.mark.anyio
async def test_an_unreachable_scheduler_fails_within_connect_timeout() -> None:
    """Nothing listens at the address: calls fail with ConnectionError naming it, after connect_timeout."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening
        async with DaskExecutor(address, connect_timeout=1) as executor:
            started = time.monotonic()
            with anyio.fail_after(30), pytest.raises(ConnectionError, match=r"connect_timeout=1 seconds") as caught:
                await executor.run(helpers.add_one, 1)
            assert address in str(caught.value)
            assert time.monotonic() - started < 20
            future = executor.submit(helpers.add_one, 1)
            with pytest.raises(ConnectionError):
                await to_thread(future.result, 30)


@pytest.mark.anyio
async def test_a_users_synchronous_client_is_used_and_never_closed(cluster: Any, workers: Any) -> None:
    """DaskExecutor(client): calls go through the user's client, which shutdown leaves open."""
    client = await to_thread(lambda: distributed.Client(cluster, set_as_default=False))
    try:
        async with DaskExecutor(client) as executor:
            assert executor.client is client
            assert await executor.run(helpers.add_one, 1) == 2
        assert client.status == "running"
        assert await to_thread(client.submit(helpers.add_one, 2).result, 30) == 3
    finally:
        await to_thread(client.close)


@pytest.mark.anyio
async def test_a_call_whose_client_closes_fails_with_executor_shutdown(cluster: Any, workers: Any) -> None:
    """The user's client closed while a call runs: the caller gets ExecutorShutdownError naming the call,
    not a hang and not a bare Dask cancellation."""
    started, gate = f"started-{uuid.uuid4().hex}", f"gate-{uuid.uuid4().hex}"
    client = await to_thread(lambda: distributed.Client(cluster, set_as_default=False))
    try:
        executor = DaskExecutor(client)
        async with anyio.create_task_group() as tg:

            async def call() -> None:
                with anyio.fail_after(60), pytest.raises(ExecutorShutdownError, match=r"gated\(\)"):
                    await executor.run(helpers.gated, started, gate)

            tg.start_soon(call)
            assert await to_thread(distributed.Event(started, client=workers).wait, 60)
            await to_thread(client.close)
        await executor.aclose()
    finally:
        await to_thread(distributed.Event(gate, client=workers).set)
        await to_thread(client.close)


@pytest.mark.anyio
async def test_an_owned_client_is_closed_on_shutdown(cluster: Any) -> None:
    """An executor made from an address closes its client on aclose(), and then refuses calls."""
    executor = DaskExecutor(cluster.scheduler_address)
    assert executor.client is None  # it connects on the first call
    assert await executor.run(helpers.add_one, 1) == 2
    client = executor.client
    assert client.status == "running"
    await executor.aclose()
    assert client.status == "closed"
    with pytest.raises(ExecutorShutdownError, match="shut down"):
        await executor.run(helpers.add_one, 1)
    with pytest.raises(ExecutorShutdownError):
        executor.submit(helpers.add_one, 1)


@pytest.mark.anyio
async def test_shutdown_waits_for_calls_in_flight(cluster: Any) -> None:
    """shutdown(wait=True) returns once the calls sent to Dask are done; their Futures have results."""
    executor = DaskExecutor(cluster.scheduler_address)
    futures = [executor.submit(helpers.slow_pid, 0.2) for _ in range(3)]
    await to_thread(executor.shutdown)
    assert all(f.done() for f in futures)
    assert all(isinstance(f.result(), int) for f in futures)


@pytest.mark.anyio
async def test_shutdown_cancel_futures_settles_the_calls_still_waiting(cluster: Any, workers: Any) -> None:
    """shutdown(cancel_futures=True): calls still waiting for max_pending room are cancelled (Futures) or
    fail with ExecutorShutdownError (awaits); the call in flight finishes."""
    started, gate = f"started-{uuid.uuid4().hex}", f"gate-{uuid.uuid4().hex}"
    executor = DaskExecutor(cluster.scheduler_address, max_pending=1)
    try:
        running = executor.submit(helpers.gated, started, gate)
        assert await to_thread(distributed.Event(started, client=workers).wait, 60)
        waiting = executor.submit(helpers.add_one, 1)
        async with anyio.create_task_group() as tg:

            async def awaited() -> None:
                with pytest.raises(ExecutorShutdownError, match="shut down before this call was sent"):
                    await executor.run(helpers.add_one, 2)

            tg.start_soon(awaited)
            with anyio.fail_after(10):
                while executor.statistics().queued < 2:  # until the awaited call has joined the queue
                    await anyio.lowlevel.checkpoint()
            executor.shutdown(wait=False, cancel_futures=True)
        assert waiting.cancelled()
        assert not running.done()
    finally:
        await to_thread(distributed.Event(gate, client=workers).set)
        await executor.aclose()
    assert running.result() == "through the gate"


@pytest.mark.anyio
async def test_an_asynchronous_client_works_on_its_own_loop_only(
    cluster: Any, workers: Any, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    """An asynchronous client serves calls on its own asyncio loop; elsewhere the error says what to pass."""
    if anyio_backend[0] == "trio":
        # It cannot even be created under trio; one from another loop (a thread's) is refused clearly.
        other = AsyncClientThread(cluster.scheduler_address)
        try:
            executor = DaskExecutor(other.client)
            with pytest.raises(RuntimeError, match=r"asynchronous.*not under trio.*scheduler address"):
                await executor.run(helpers.add_one, 1)
        finally:
            other.close()
        return
    client = await distributed.Client(cluster.scheduler_address, asynchronous=True, set_as_default=False)
    try:
        async with DaskExecutor(client, max_pending=2) as executor:
            wrapped = async_wrap(executor=executor)(helpers.add_one)
            async with anyio.create_task_group() as tg:
                for i in range(5):
                    tg.start_soon(wrapped, i)
            assert await executor.run(helpers.add_one, 1) == 2
            assert executor.statistics().completed == 6
            # Cancelling: the Dask future's cancel() is a coroutine on this client, awaited on its loop.
            started, gate = f"started-{uuid.uuid4().hex}", f"gate-{uuid.uuid4().hex}"
            try:
                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(executor.run, helpers.gated, started, gate)
                        assert await to_thread(distributed.Event(started, client=workers).wait, 60)
                        scope.cancel()
                await wait_until_gone(workers, "gated-")
            finally:
                await to_thread(distributed.Event(gate, client=workers).set)
        assert client.status == "running"
        other = AsyncClientThread(cluster.scheduler_address)
        try:
            with pytest.raises(RuntimeError, match="belongs to another asyncio loop"):
                await DaskExecutor(other.client).run(helpers.add_one, 1)
        finally:
            other.close()
    finally:
        await client.close()


class AsyncClientThread:
    """An asynchronous Client living on an asyncio loop in a thread of its own."""

    def __init__(self, address: str) -> None:
        import asyncio
        import threading

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def connect() -> Any:
            return await distributed.Client(address, asynchronous=True, set_as_default=False)

        self.client = asyncio.run_coroutine_threadsafe(connect(), self.loop).result(60)

    def close(self) -> None:
        import asyncio

        async def close() -> None:
            await self.client.close()  # a coroutine only on the client's own loop

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)
        self.loop.close()


# -- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        (("tcp://x:1",), {"max_pending": 0}, ValueError, "max_pending must be at least 1, got 0"),
        (("tcp://x:1",), {"max_pending": -5}, ValueError, "max_pending must be at least 1, got -5"),
        (("tcp://x:1",), {"max_pending": 2.5}, TypeError, "max_pending must be an int, got float 2.5"),
        (("tcp://x:1",), {"max_pending": "50"}, TypeError, "max_pending must be an int, got str '50'"),
        (("tcp://x:1",), {"max_pending": True}, TypeError, "max_pending must be an int, got bool True"),
        (("tcp://x:1",), {"retries": -1}, ValueError, "retries must be 0 or more, got -1"),
        (("tcp://x:1",), {"retries": "2"}, TypeError, "retries must be an int, got str '2'"),
        (("tcp://x:1",), {"connect_timeout": 0}, ValueError, "connect_timeout must be a positive number"),
        (("tcp://x:1",), {"resources": ["GPU"]}, TypeError, "resources must be a mapping"),
        (("tcp://x:1",), {"resources": {"GPU": -1}}, ValueError, r"resources\['GPU'\] must be a non-negative"),
        ((8786,), {}, TypeError, "client_or_address must be a scheduler address.*got int 8786"),
        ((None,), {}, TypeError, "client_or_address must be a scheduler address.*got NoneType"),
        (("  ",), {}, ValueError, "client_or_address must be a scheduler address such as"),
    ],
)
def test_rejects_bad_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Bad arguments raise TypeError or ValueError naming the argument, before anything connects."""
    with pytest.raises(error, match=message):
        DaskExecutor(*args, **kwargs)


def test_a_closed_client_is_refused(cluster: Any) -> None:
    """A client that is closed cannot be given to an executor: the error says what to pass instead."""
    client = distributed.Client(cluster, set_as_default=False)
    client.close()
    with pytest.raises(ValueError, match="status is 'closed'; pass a running client"):
        DaskExecutor(client)


def test_concurrent_futures_api(cluster: Any) -> None:
    """submit, map and `with` work from plain threads, as with any concurrent.futures.Executor."""
    with DaskExecutor(cluster.scheduler_address) as executor:
        assert executor.submit(helpers.add_one, 1).result(30) == 2
        assert list(executor.map(helpers.add_one, [1, 2, 3], timeout=30)) == [2, 3, 4]
        with pytest.raises(ValueError, match="boom"):
            executor.submit(helpers.raise_value_error, "boom").result(30)
        assert isinstance(executor, cf.Executor)


def test_map_with_buffersize_takes_items_as_results_are_taken(cluster: Any) -> None:
    """map(buffersize=3), as 3.14's Executor.map: 3 items sent to the cluster up front, one more per result,
    so an endless iterable can be mapped over a cluster."""
    taken = 0

    def endless() -> Iterator[int]:
        nonlocal taken
        while True:
            taken += 1
            yield taken

    with DaskExecutor(cluster.scheduler_address) as executor:
        results = executor.map(helpers.add_one, endless(), timeout=30, buffersize=3)
        assert taken == 3
        assert [next(results) for _ in range(4)] == [2, 3, 4, 5]
        assert taken == 7
        results.close()


# -- importing -------------------------------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)


def test_importing_asyncbridge_does_not_import_dask() -> None:
    """`import asyncbridge` leaves Dask alone: it costs about half a second to import."""
    done = run_python("import sys, asyncbridge; print('distributed' in sys.modules, 'dask' in sys.modules)")
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_without_distributed_the_import_error_names_the_extra() -> None:
    """Without distributed installed, `import asyncbridge.dask` raises ImportError saying what to install."""
    done = run_python(
        "import sys; sys.modules['distributed'] = None\n"
        "try:\n    import asyncbridge.dask\nexcept ImportError as e:\n    print('ImportError:', e)\n"
    )
    assert "ImportError: asyncbridge.dask needs Dask's distributed package" in done.stdout, done.stderr
    assert "pip install asyncbridge[dask]" in done.stdout


def test_asyncbridge_errors_stay_in_the_tree() -> None:
    """The errors the executor raises of its own are asyncbridge's (besides ConnectionError)."""
    assert issubclass(WorkerCrashedError, AsyncBridgeError)
    assert issubclass(ExecutorShutdownError, AsyncBridgeError)


# -- the documentation's example ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_offload_example_runs_against_a_given_scheduler(
    cluster: Any, anyio_backend: tuple[str, dict[str, Any]]
) -> None:
    """examples/dask_offload.py (shown in docs/dask.md) runs on the cluster named by DASK_SCHEDULER_ADDRESS,
    under the same event loop as this test, and prints the right counts."""
    loop = "uvloop" if anyio_backend[1].get("use_uvloop") else anyio_backend[0]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
        "DASK_SCHEDULER_ADDRESS": cluster.scheduler_address,
    }
    with anyio.fail_after(120):
        done = await anyio.run_process(
            [sys.executable, str(ROOT / "examples" / "dask_offload.py"), loop], env=env, check=False
        )
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert "primes below 10,000: 1,229" in out
    assert "primes below 80,000: 7,837" in out
    assert "8 calls in" in out


def test_every_python_example_in_the_docs_is_a_tested_example_program() -> None:
    """Each python code block of docs/dask.md includes a whole program from examples/ (run above)."""
    import re

    text = (ROOT / "docs" / "dask.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks
    for block in blocks:
        included = re.fullmatch(r'--8<-- "examples/(dask_\w+\.py)"\n', block)
        assert included, f"not an included example program:\n{block[:200]}"
        assert (ROOT / "examples" / included.group(1)).is_file()
