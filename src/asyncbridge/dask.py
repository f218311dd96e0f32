"""DaskExecutor: awaited calls that run on a Dask cluster, from asyncio, uvloop and trio.

The one concept here is an asyncbridge executor whose workers are a Dask
``distributed`` cluster. It implements the :class:`~asyncbridge._call.CallExecutor`
hand-off like the thread and process executors, so ``async_wrap(executor=...)``,
``await executor.run(...)`` and the ``concurrent.futures`` API work unchanged.

How a call travels: the event loop's thread submits it with
``client.submit(...)`` (a plain, non-blocking call that sends a message), and
a small coroutine on the *client's* IO loop awaits the Dask future there
(``client.gather(..., asynchronous=True)``), then finishes the
:class:`~asyncbridge._call.Call`, which wakes the awaiting task through its
loop's inbox. With a synchronous client (what an address makes; the only kind
trio can use) the client's IO loop is a thread of Dask's own, so no call ever
blocks on ``.result()`` and no thread is started per call; with a user's
asynchronous client that loop is the awaiting asyncio loop itself.

Importing :mod:`asyncbridge` never imports Dask; importing this module needs
the ``dask`` extra (``pip install asyncbridge[dask]``).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import importlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, TypeVar

from typing_extensions import ParamSpec

try:
    # Imported as Any: Dask's own annotations are partial, and strict checking
    # of this module should not depend on which Dask version is installed.
    distributed: Any = importlib.import_module("distributed")
    KilledWorker: type[BaseException] = importlib.import_module("distributed.scheduler").KilledWorker
except ImportError as _exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        f"asyncbridge.dask needs Dask's distributed package: install it with 'pip install asyncbridge[dask]' ({_exc})"
    ) from _exc

from ._backends import current_inbox, running_asyncio_loop
from ._call import RUNNING, Call, FutureCall
from ._checks import check_count, check_seconds
from ._exceptions import AsyncBridgeError, ExecutorShutdownError, WorkerCrashedError
from ._executor import ExecutorBase, wait_off_loop
from ._reference import function_reference
from ._statistics import ExecutorStatistics
from ._thread_start import new_thread, start_thread

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DaskExecutor"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_CONNECT_TIMEOUT = 30.0  # seconds; Dask's own default for a client's first connection
"""Seconds a :class:`DaskExecutor` waits for the scheduler when it connects, unless told otherwise.

Example:
    ```python
    from asyncbridge.dask import DEFAULT_CONNECT_TIMEOUT, DaskExecutor

    executor = DaskExecutor("tcp://scheduler:8786", connect_timeout=2 * DEFAULT_CONNECT_TIMEOUT)
    executor.shutdown()  # it had not connected yet: that happens on the first call
    ```
"""
CLOSE_TIMEOUT = 30.0  # seconds an owned client may take to close on shutdown

# Connection states of an executor made from an address (or a cluster object).
_IDLE = 0  # not connected yet, or the last attempt failed: the next call connects
_CONNECTING = 1
_READY = 2


def _name_of(fn: object) -> str:
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


def _task_of(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Callable[[], Any]:
    """What Dask runs for one call: a picklable, argument-free callable.

    The user's arguments travel inside it, so none of them (``key=``,
    ``priority=``, ``workers=``...) is ever taken as an option of
    ``client.submit``. A module-level function is sent by reference (a
    decorated one too: see ``_reference``); a function of ``__main__`` is left
    to Dask's cloudpickle, which sends it by value, since a worker's
    ``__main__`` is not the caller's.
    """
    if getattr(fn, "__module__", None) != "__main__":
        fn = function_reference(fn)
    return partial(fn, *args, **kwargs)


class _Sent:
    """An executor's bookkeeping for one call: its Dask future, once submitted, and whether it is settled.

    ``settled`` is set, under the executor's lock, by whichever comes first:
    the call's outcome, or its caller going away (``drop_call``); the other
    then does nothing.
    """

    __slots__ = ("attempts_left", "future", "settled")

    def __init__(self, attempts_left: int) -> None:
        self.future: Any = None  # distributed.Future
        self.settled = False
        self.attempts_left = attempts_left


class DaskExecutor(ExecutorBase):
    """Run awaited calls on a Dask cluster, from asyncio, uvloop or trio.

    Move a CPU-bound function from one machine to a cluster by changing only
    the executor: ``@async_wrap(executor=DaskExecutor("tcp://scheduler:8786"))``.
    It is a :class:`concurrent.futures.Executor` too (``submit``, ``map``,
    ``shutdown``, ``with``), and ``async with``/``aclose()`` shut it down
    without blocking the event loop.

    Every call is its own Dask task: submitted with ``pure=False`` under a
    fresh key named after the function, so two calls with equal arguments both
    run, and with the function and its arguments wrapped in one callable, so
    a keyword argument of the function named like a ``submit()`` option
    (``key``, ``priority``, ``workers``...) reaches the function.

    Cancelling the await (or a timeout) cancels the Dask future at once and
    ends the await: a task still waiting for a worker never runs; a task
    already running cannot be interrupted by Dask, it finishes on its worker
    and its result is dropped. A worker that dies mid-call makes Dask run the
    task elsewhere, up to the scheduler's ``distributed.scheduler.allowed-failures``
    times; past that, the call raises :class:`WorkerCrashedError` naming it,
    unless ``retries`` lets the executor submit it again.

    Args:
        client_or_address: where calls run. A scheduler address
            (``"tcp://host:8786"``) or a cluster object (such as
            ``distributed.LocalCluster()``): the executor creates its own
            synchronous :class:`distributed.Client` on the first call, with
            ``set_as_default=False``, and closes it on shutdown. Or a
            :class:`distributed.Client` of yours, which the executor uses and
            never closes: a synchronous one works from any event loop or
            thread; an asynchronous one only on the asyncio loop it was
            created on.
        max_pending: the most calls submitted to the cluster at once; further
            calls wait in the executor, in order, for one to finish. None (the
            default) submits every call at once and leaves the queueing to the
            scheduler.
        retries: how many times to submit again a call that failed because
            the workers running it died (Dask's ``KilledWorker``). Exceptions
            raised by the function itself are never retried.
        resources: Dask worker resources each call needs, such as
            ``{"GPU": 1}`` (see Dask's documentation); None for none.
        connect_timeout: seconds to wait for the scheduler when the executor
            connects; calls waiting for the connection fail with
            :class:`ConnectionError` after that.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: ``max_pending`` below 1, ``retries`` negative, a negative
            resource amount, an empty address, a client that is not running
            (closed, or asynchronous and not awaited yet), or
            ``connect_timeout`` not a positive number of seconds.

    Example:
        A cluster of threads in this process stands in for ``"tcp://scheduler:8786"``:

        ```python
        import distributed
        from asyncbridge import async_wrap, to_thread
        from asyncbridge.dask import DaskExecutor

        cluster = await to_thread(distributed.LocalCluster, processes=False, n_workers=1, dashboard_address=None)
        executor = DaskExecutor(cluster)


        @async_wrap(executor=executor)
        def simulate(steps: int) -> int:  # CPU-bound: runs on a Dask worker
            return sum(i * i for i in range(steps))


        assert await simulate(1000) == 332833500
        assert await executor.run(pow, 2, 10) == 1024
        print(executor.statistics())  # ExecutorStatistics(max_workers=..., completed=2, ...)
        await executor.aclose()
        await to_thread(cluster.close)
        ```

        From sync code, it is a ``concurrent.futures.Executor``:

        ```python
        import distributed
        from asyncbridge.dask import DaskExecutor

        with distributed.LocalCluster(processes=False, n_workers=1, dashboard_address=None) as cluster:
            executor = DaskExecutor(cluster)
            assert executor.submit(pow, 2, 10).result() == 1024
            assert list(executor.map(abs, [-1, -2])) == [1, 2]
            executor.shutdown()
        ```
    """

    def __init__(
        self,
        client_or_address: Any,
        *,
        max_pending: int | None = None,
        retries: int = 0,
        resources: Mapping[str, float] | None = None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        self._target: Any = None  # an address or a cluster to connect to; None for a user's client
        self._client: Any = None  # distributed.Client once connected
        self._owns_client = False
        if isinstance(client_or_address, distributed.Client):
            if client_or_address.status not in ("running", "connecting"):
                mode = "await Client(..., asynchronous=True)" if client_or_address.asynchronous else "Client(...)"
                raise ValueError(
                    f"client_or_address is a Client whose status is {client_or_address.status!r}; "
                    f"pass a running client ({mode}) or the scheduler address"
                )
            self._client = client_or_address
        elif isinstance(client_or_address, str):
            if not client_or_address.strip():
                raise ValueError("client_or_address must be a scheduler address such as 'tcp://127.0.0.1:8786', got ''")
            self._target = client_or_address
            self._owns_client = True
        elif isinstance(getattr(client_or_address, "scheduler_address", None), str):
            self._target = client_or_address  # a cluster object: LocalCluster, SpecCluster...
            self._owns_client = True
        else:
            raise TypeError(
                "client_or_address must be a scheduler address (such as 'tcp://127.0.0.1:8786'), a Dask "
                f"cluster object or a distributed.Client, got {type(client_or_address).__name__} {client_or_address!r}"
            )
        self._max_pending = None if max_pending is None else check_count(max_pending, "max_pending")
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise TypeError(f"retries must be an int, got {type(retries).__name__} {retries!r}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, got {retries}")
        self._retries = retries
        if resources is not None:
            if not isinstance(resources, Mapping):
                raise TypeError(
                    f"resources must be a mapping such as {{'GPU': 1}} or None, got {type(resources).__name__}"
                )
            for name, amount in resources.items():
                if not isinstance(name, str):
                    raise TypeError(f"resources keys must be resource names (str), got {name!r}")
                if isinstance(amount, bool) or not isinstance(amount, (int, float)) or amount < 0:
                    raise ValueError(f"resources[{name!r}] must be a non-negative number, got {amount!r}")
            resources = dict(resources)
        self._resources: dict[str, float] | None = resources
        self._connect_timeout = check_seconds(connect_timeout, "connect_timeout")

        self._lock = threading.Lock()
        self._state = _IDLE if self._client is None else _READY
        self._queue: deque[Call] = deque()  # calls waiting for room (max_pending) or the connection
        self._in_flight = 0  # calls submitted to Dask (or being submitted) and not settled
        self._shutdown = False
        self._idle = threading.Event()  # no call in flight or queued
        self._idle.set()
        self._closed = threading.Event()  # shut down, every call settled, an owned client closed
        self._completed = 0
        self._failed = 0
        self._total_wait = 0.0
        self._max_wait = 0.0

    def __repr__(self) -> str:
        where = self._target
        if where is None:  # a user's client
            where = getattr(getattr(self._client, "scheduler", None), "address", None) or "a Client"
        elif not isinstance(where, str):
            where = getattr(where, "scheduler_address", None) or type(where).__name__
        state = "shut down" if self._shutdown else f"{self._in_flight} in flight"
        return f"<DaskExecutor {where!r}, {state}>"

    @property
    def client(self) -> Any:
        """The ``distributed.Client`` calls go through: the user's, or the executor's own once connected (else None)."""
        return self._client

    @property
    def max_pending(self) -> int | None:
        """The most calls submitted to the cluster at once, or None for no bound."""
        return self._max_pending

    # -- the hand-off, used by the loop side (see _call.CallExecutor) ----------

    def submit_call(self, call: Call, /) -> None:
        client = self._client
        # Client.asynchronous says whether this thread runs the client's loop now; the mode the
        # client was created in is its _asynchronous.
        if client is not None and getattr(client, "_asynchronous", False):
            self._check_async_client(client)
        with self._lock:
            if self._shutdown:
                raise ExecutorShutdownError(f"{self!r} is shut down; create a new executor to run more calls")
            self._idle.clear()
            connect = self._state == _IDLE
            if connect:
                self._state = _CONNECTING
            send = self._state == _READY and (self._max_pending is None or self._in_flight < self._max_pending)
            if send:
                self._in_flight += 1
                call.handle = _Sent(self._retries)
            else:  # waits for room, or for the connection
                call.enqueued_at = time.monotonic()
                self._queue.append(call)
        if connect:
            start_thread(new_thread(self._connect, "asyncbridge-dask-connect"), self._connect_failed)
        if send:
            self._send(call, raise_errors=True)

    def drop_call(self, call: Call, /) -> bool:
        ready: list[Call] = []
        with self._lock:
            sent: _Sent | None = call.handle
            if sent is None:  # still queued here
                try:
                    self._queue.remove(call)
                except ValueError:
                    return False  # being taken out to be sent: it reports back
                self._update_idle()
                dropped_future = None
            else:
                if sent.settled:
                    return False  # its outcome is on its way to the caller
                sent.settled = True
                self._in_flight -= 1
                dropped_future = sent.future  # None while another thread submits it: that thread cancels it
                ready = self._take_ready()
        call.drop()
        if sent is not None:
            if dropped_future is not None:
                self._cancel(dropped_future)
            self._send_all(ready)
        return True

    # -- public API -----------------------------------------------------------

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` on the cluster and return its result.

        Cancelling the await (or a timeout) cancels the Dask task: one not
        started yet never runs, one running finishes on its worker and its
        result is dropped.

        Raises:
            ExecutorShutdownError: the executor is shut down.
            ConnectionError: the scheduler could not be reached within ``connect_timeout``.
            WorkerCrashedError: the workers running the call kept dying.
            RuntimeError: an asynchronous client used off its own asyncio loop.
            BaseException: whatever ``fn`` raised, with the worker's traceback.
        """
        call = Call(fn, args, kwargs, None, self)
        result: T = await current_inbox().run(call)
        return result

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> cf.Future[T]:
        """Schedule ``fn(*args, **kwargs)`` on the cluster; return a :class:`concurrent.futures.Future`.

        ``Future.cancel()`` keeps the concurrent.futures contract: it cancels a
        call still waiting in this executor (for ``max_pending`` room or the
        connection); a call submitted to Dask counts as running.

        Raises:
            ExecutorShutdownError: the executor is shut down (a RuntimeError).
            RuntimeError: an asynchronous client used off its own asyncio loop.
        """
        future: cf.Future[T] = cf.Future()
        self.submit_call(FutureCall(future, fn, args, kwargs, None, self))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; with ``wait``, block until every call is settled and an owned client closed.

        Calls submitted to Dask finish; calls still waiting in the executor
        are sent too, unless ``cancel_futures`` is true: then their Futures
        are cancelled and their awaiting callers get
        :class:`ExecutorShutdownError`. A client the executor created is closed
        once no call is left; a client you passed in is left open. Safe to
        call more than once. In async code use ``aclose()`` (or ``async with``).
        """
        first = False
        stranded: list[Call] = []
        with self._lock:
            if not self._shutdown:
                self._shutdown = first = True
            if cancel_futures:
                stranded = list(self._queue)
                self._queue.clear()
                self._update_idle()
        for call in stranded:
            if isinstance(call, FutureCall) and call.future.cancel():
                call.drop()
            else:
                call.fail(ExecutorShutdownError(f"{self!r} was shut down before this call was sent to Dask"))
        if first:
            start_thread(new_thread(self._close_when_idle, "asyncbridge-dask-close"), self._close_failed)
        if wait:
            self._closed.wait()

    async def aclose(self) -> None:
        """Shut down like ``shutdown(wait=True)``, without blocking the event loop."""
        self.shutdown(wait=False)
        if not self._closed.is_set():
            await wait_off_loop(self._closed)

    def statistics(self) -> ExecutorStatistics:
        """Return a snapshot: calls in flight on the cluster (``running``), waiting here (``queued``), totals.

        ``max_workers`` is ``max_pending``, or without it the worker threads
        the cluster had when last seen; ``workers`` the Dask workers then.
        """
        info: Any = getattr(self._client, "_scheduler_identity", None) or {}  # cached by the client: no I/O
        try:
            workers = int(info.get("n_workers", len(info.get("workers", ()))))
            threads = int(info.get("total_threads", 0))
        except (TypeError, ValueError, AttributeError):  # pragma: no cover - a changed Dask
            workers = threads = 0
        with self._lock:
            return ExecutorStatistics(
                max_workers=self._max_pending if self._max_pending is not None else threads,
                workers=workers,
                running=self._in_flight,
                queued=len(self._queue),
                completed=self._completed,
                failed=self._failed,
                total_wait_time=self._total_wait,
                max_wait_time=self._max_wait,
            )

    # -- submitting --------------------------------------------------------------

    def _check_async_client(self, client: Any) -> None:
        loop = running_asyncio_loop()
        if loop is None:
            raise RuntimeError(
                "this DaskExecutor's Client is asynchronous, and an asynchronous Client works only on the "
                "asyncio loop that created it, not under trio or from a thread; give DaskExecutor the "
                "scheduler address (or a synchronous Client) instead"
            )
        if client.loop.asyncio_loop is not loop:
            raise RuntimeError(
                "this DaskExecutor's Client is asynchronous and belongs to another asyncio loop; create "
                "the executor from the scheduler address (or a synchronous Client) to use it from any loop"
            )

    def _take_ready(self) -> list[Call]:
        """Under the lock: the queued calls there is room for now, their room reserved."""
        ready: list[Call] = []
        if self._state == _READY:
            queue = self._queue
            limit = self._max_pending
            now = time.monotonic()
            while queue and (limit is None or self._in_flight < limit):
                call = queue.popleft()
                waited = now - call.enqueued_at
                self._total_wait += waited
                if waited > self._max_wait:
                    self._max_wait = waited
                self._in_flight += 1
                call.handle = _Sent(self._retries)
                ready.append(call)
        self._update_idle()
        return ready

    def _update_idle(self) -> None:
        if self._in_flight == 0 and not self._queue:
            self._idle.set()
        else:
            self._idle.clear()

    def _send_all(self, calls: list[Call]) -> None:
        for call in calls:
            self._send(call, raise_errors=False)

    def _send(self, call: Call, *, raise_errors: bool) -> None:
        """Submit a call whose room is reserved; a failure to submit raises (``raise_errors``) or fails it."""
        if isinstance(call, FutureCall) and not call.future.set_running_or_notify_cancel():
            self._settle(call, None, None, dropped=True)  # cancelled by its user while queued
            return
        client = self._client
        sent: _Sent = call.handle
        try:
            future = self._new_task(client, call)
        except BaseException as exc:  # e.g. an argument that cannot be pickled
            if raise_errors:
                with self._lock:
                    sent.settled = True
                    self._in_flight -= 1
                    ready = self._take_ready()
                call.handle = None
                self._send_all(ready)
                raise
            self._settle(call, None, exc)
            return
        call.state = RUNNING
        with self._lock:
            sent.future = future
            dropped = sent.settled  # the caller went away while it was being submitted
        if dropped:
            self._cancel(future)
            return
        client.loop.add_callback(self._watch, call, sent, future)

    def _cancel(self, future: Any) -> None:
        """Cancel a Dask future without waiting: on the client's loop, where an async client needs it awaited."""
        client = future.client
        with contextlib.suppress(RuntimeError):  # the client's loop is closed: nothing is left to cancel
            client.loop.add_callback(partial(client.cancel, [future], asynchronous=True))

    async def _watch(self, call: Call, sent: _Sent, future: Any) -> None:
        """On the client's loop: wait for the Dask future, then settle the call with its outcome."""
        client = future.client
        result: Any = None
        exc: BaseException | None = None
        try:
            result = await client.gather(future, asynchronous=True)
        except KilledWorker as killed:
            with self._lock:
                retry = not sent.settled and sent.attempts_left > 0
                if retry:
                    sent.attempts_left -= 1
            if retry:
                future.release()
                self._submit_again(call, sent)
                return
            exc = WorkerCrashedError(
                f"the Dask workers running {_describe_key(future.key)} kept dying during the call ({killed}); "
                "set DaskExecutor(retries=...) to submit it again"
            )
            exc.__cause__ = killed
        except cf.CancelledError as cancelled:  # Dask's FutureCancelledError (a subclass, from 2024.x) included
            if sent.settled:
                future.release()
                return  # cancelled by drop_call: the caller is gone
            if client.status in ("closing", "closed"):
                exc = ExecutorShutdownError(
                    f"the Dask client closed before the call {_describe_key(future.key)} returned: {cancelled}"
                )
            else:
                exc = AsyncBridgeError(f"Dask cancelled the call {_describe_key(future.key)}: {cancelled}")
            exc.__cause__ = cancelled
        except BaseException as raised:  # the function's own exception, delivered to the caller
            exc = raised
        future.release()
        self._settle(call, result, exc)

    def _new_task(self, client: Any, call: Call) -> Any:
        """Submit ``call`` as a new Dask task (a fresh key, never deduplicated, retried by us, not Dask)."""
        return client.submit(
            _task_of(call.fn, call.args, call.kwargs),
            key=f"{_name_of(call.fn)}-{uuid.uuid4().hex}",
            pure=False,
            retries=0,
            resources=self._resources,
        )

    def _submit_again(self, call: Call, sent: _Sent) -> None:
        """After its workers died: submit the call again, under a new key (``retries``)."""
        client = self._client
        try:
            future = self._new_task(client, call)
        except BaseException as exc:  # pragma: no cover - the client closed meanwhile
            self._settle(call, None, exc)
            return
        with self._lock:
            sent.future = future
            dropped = sent.settled
        if dropped:
            self._cancel(future)
            return
        client.loop.add_callback(self._watch, call, sent, future)

    def _settle(self, call: Call, result: Any, exc: BaseException | None, *, dropped: bool = False) -> None:
        """Report a call's outcome (unless its caller dropped it first) and send the calls waiting for room."""
        sent: _Sent = call.handle
        with self._lock:
            if sent.settled:
                return
            sent.settled = True
            self._in_flight -= 1
            if not dropped:
                self._completed += 1
                if exc is not None:
                    self._failed += 1
            ready = self._take_ready()
        if dropped:
            call.drop()
        else:
            call.result = result
            call.exc = exc
            call.finish()
        self._send_all(ready)

    # -- connecting and closing -------------------------------------------------------------

    def _connect(self) -> None:
        """In a thread of its own: create the executor's client, then send the calls that waited for it."""
        target = self._target
        try:
            client = distributed.Client(
                target,
                asynchronous=False,
                set_as_default=False,
                timeout=self._connect_timeout,
            )
        except BaseException as exc:
            where = target if isinstance(target, str) else getattr(target, "scheduler_address", target)
            error = ConnectionError(
                f"DaskExecutor could not connect to the Dask scheduler at {where!r} within "
                f"connect_timeout={self._connect_timeout:g} seconds: {exc}"
            )
            error.__cause__ = exc
            self._connect_failed(error)
            return
        with self._lock:
            self._client = client
            self._state = _READY
            ready = self._take_ready()
        self._send_all(ready)

    def _connect_failed(self, exc: BaseException) -> None:
        """Fail the calls that waited for a connection; the next call tries to connect again."""
        with self._lock:
            self._state = _IDLE
            stranded = list(self._queue)
            self._queue.clear()
            self._update_idle()
        for call in stranded:
            if isinstance(call, FutureCall) and not call.future.set_running_or_notify_cancel():
                call.drop()  # cancelled by its user meanwhile
            else:
                call.fail(exc)

    def _close_when_idle(self) -> None:
        """In a thread of its own, after shutdown: wait until no call is left, close an owned client."""
        self._idle.wait()
        try:
            if self._owns_client:
                with self._lock:
                    client = self._client
                    self._state = _IDLE
                if client is not None:
                    client.close(timeout=CLOSE_TIMEOUT)
        finally:
            self._closed.set()

    def _close_failed(self, exc: BaseException) -> None:  # pragma: no cover - a thread that cannot start
        self._closed.set()


def _describe_key(key: object) -> str:
    """A call's function name (what its Dask key starts with) and its key, for error messages."""
    text = str(key)
    return f"{text.rsplit('-', 1)[0]}() (Dask key {text!r})"
