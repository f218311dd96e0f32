"""Every exception asyncbridge raises of its own.

User exceptions pass through unchanged: awaiting a wrapped ``f`` raises exactly
what ``f`` raised. Only asyncbridge's own failures get a type from this tree::

    AsyncBridgeError
    ├── ExecutorShutdownError (RuntimeError)   submit/run after shutdown
    ├── WorkerCrashedError (BrokenProcessPool) a worker process died mid-call
    ├── WorkerStartError (RuntimeError)        worker processes keep failing to start
    └── BlockingCallError                      the detector's strict mode, set to raise
"""

from __future__ import annotations

from concurrent.futures.process import BrokenProcessPool

__all__ = [
    "AsyncBridgeError",
    "BlockingCallError",
    "ExecutorShutdownError",
    "WorkerCrashedError",
    "WorkerStartError",
]


class AsyncBridgeError(Exception):
    """Base class of every exception asyncbridge raises of its own.

    Example:
        ```python
        from asyncbridge import AsyncBridgeError, ExecutorShutdownError, ThreadExecutor

        executor = ThreadExecutor()
        executor.shutdown()
        try:
            executor.submit(print, "never printed")
        except AsyncBridgeError as error:  # whichever asyncbridge error it is
            caught = error
        assert isinstance(caught, ExecutorShutdownError)
        ```
    """


class ExecutorShutdownError(AsyncBridgeError, RuntimeError):
    """Raised by ``submit``, ``run`` and wrapped calls on an executor that is shut down.

    It is a :class:`RuntimeError`, like the error ``concurrent.futures`` raises for
    the same mistake, so existing ``except RuntimeError`` handlers keep working.
    Calls that were still queued when ``shutdown(cancel_futures=True)`` ran also
    fail with it.

    Example:
        ```python
        from asyncbridge import ExecutorShutdownError, ThreadExecutor

        executor = ThreadExecutor()
        await executor.aclose()
        try:
            await executor.run(print, "never printed")
        except ExecutorShutdownError as error:  # or except RuntimeError
            message = str(error)
        print(message)
        ```
    """


class WorkerCrashedError(AsyncBridgeError, BrokenProcessPool):
    """Raised for a call whose worker process died before it returned a result.

    It is a :class:`concurrent.futures.process.BrokenProcessPool` (and so a
    ``BrokenExecutor`` and a ``RuntimeError``), the error ``ProcessPoolExecutor``
    raises when a worker dies, so code written for the stdlib pool catches it
    unchanged; unlike there, only this call failed and the pool carries on.

    Attributes:
        pid: the process id of the worker that died.
        exitcode: its exit code as :attr:`multiprocessing.Process.exitcode`
            reports it: negative for a signal (``-9`` for SIGKILL), ``None`` if
            unknown.

    Example:
        ```python
        import os
        from asyncbridge import ProcessExecutor, WorkerCrashedError

        async with ProcessExecutor(max_workers=1) as executor:
            try:
                await executor.run(os._exit, 3)  # the worker dies mid-call
            except WorkerCrashedError as error:
                crash = error
            assert (crash.exitcode, crash.signal) == (3, None)
            assert await executor.run(abs, -1) == 1  # a new worker takes the next call
        ```
    """

    def __init__(self, message: str, *, pid: int | None = None, exitcode: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.exitcode = exitcode

    @property
    def signal(self) -> int | None:
        """The number of the signal that killed the worker, or ``None``."""
        if self.exitcode is not None and self.exitcode < 0:
            return -self.exitcode
        return None


class WorkerStartError(AsyncBridgeError, RuntimeError):
    """Raised when worker processes fail to start several times in a row.

    The pool stops respawning and fails calls at once with this error (its
    ``__cause__`` tells why the last start failed) until a start succeeds.

    Example:
        ```python
        import os
        from asyncbridge import ProcessExecutor, WorkerStartError

        with ProcessExecutor(1, initializer=os._exit, initargs=(5,)) as executor:  # workers die at start
            try:
                executor.submit(abs, -1).result()
            except WorkerStartError as error:
                message = str(error)
        print(message)  # worker processes failed to start 3 times in a row; ... exited with code 5 ...
        ```
    """


class BlockingCallError(AsyncBridgeError):
    """Raised by the :class:`BlockingDetector` strict mode, when set to raise,
    for a known blocking call made on an event loop thread.

    Example:
        ```python
        import time
        from asyncbridge import BlockingCallError, BlockingDetector

        async with BlockingDetector(strict="raise"):
            try:
                time.sleep(0.01)  # a known blocking call, on the event loop's thread
            except BlockingCallError as error:
                message = str(error)
        print(message)
        ```
    """
