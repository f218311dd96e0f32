"""What the process tests share on the parent's side: meeting calls as they run in workers, watching
worker processes end, and the one place that names attributes of asyncbridge's process module.

(The functions the tests run in workers live in ``_process_helpers``, which workers import: this
module is kept out of them.)
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from anyio.abc import SocketListener, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from asyncbridge import ProcessExecutor, _processes

TESTS_DIR = Path(__file__).parent

# -- synchronising with calls running in workers ------------------------------------------


class Rendezvous:
    """A TCP listener that calls of ``helpers.report_and_wait`` report to.

    ``started()`` waits for the next call to report, returning its connection
    and its worker's pid; ``release(conn)`` lets that call return; a worker
    that is killed closes its connection, which ``closed(conn)`` waits for.
    """

    def __init__(self, listener: SocketListener) -> None:
        self.listener = listener
        self.port: int = listener.extra(anyio.abc.SocketAttribute.local_port)

    async def started(self) -> tuple[SocketStream, int]:
        with anyio.fail_after(20):
            conn = await self.listener.accept()
            line = await BufferedByteReceiveStream(conn).receive_until(b"\n", 20)
        return conn, int(line)

    async def release(self, conn: SocketStream) -> None:
        await conn.send(b"!")
        await conn.aclose()

    async def closed(self, conn: SocketStream) -> bool:
        """True once the worker's end is closed (it was killed), within 10 s."""
        with anyio.fail_after(10):
            try:
                await conn.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return True
            finally:
                await conn.aclose()
        return False


@asynccontextmanager
async def rendezvous() -> AsyncIterator[Rendezvous]:
    multi = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with multi:
        listener = multi.listeners[0]
        assert isinstance(listener, SocketListener)
        yield Rendezvous(listener)


@contextmanager
def sync_rendezvous() -> Iterator[socket.socket]:
    """The blocking form for the concurrent.futures API tests."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(20)
        yield server


def accept_started(server: socket.socket) -> tuple[socket.socket, int]:
    conn, _ = server.accept()
    conn.settimeout(20)
    data = b""
    while not data.endswith(b"\n"):
        data += conn.recv(20)
    return conn, int(data)


def process_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: list[int], timeout: float = 10) -> bool:
    """Wait until none of these processes runs any more (exited, reaped or not); False on timeout.

    Waits on each process's pidfd, which becomes readable once the process has
    exited: all its threads gone and its file descriptors closed.
    """
    deadline = time.monotonic() + timeout
    pidfds: list[int] = []
    try:
        for pid in pids:
            with suppress(ProcessLookupError):  # already exited and reaped
                pidfds.append(os.pidfd_open(pid))
        for pidfd in pidfds:
            readable, _, _ = select.select([pidfd], [], [], max(deadline - time.monotonic(), 0))
            if not readable:
                return False
        return True
    finally:
        for pidfd in pidfds:
            os.close(pidfd)


def child_pids() -> set[int]:
    return {child.pid for child in psutil.Process().children(recursive=True)}


# -- asyncbridge's process internals that the tests reach ---------------------------------
# Every reference to a module attribute of asyncbridge's process code (the package
# asyncbridge._processes) is here, so that moving that code changes only this section.


def disable_cloudpickle(monkeypatch: pytest.MonkeyPatch) -> None:
    """Behave, in this process, as if cloudpickle were not installed."""
    monkeypatch.setattr(_processes.pickling, "_cloudpickle", lambda: None)


DISABLE_CLOUDPICKLE = "from asyncbridge._processes import pickling; pickling._cloudpickle = lambda: None"
"""The same, as one line of Python for a script run in a subprocess."""


def set_start_retry_delay(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make the pool wait ``seconds`` (instead of START_RETRY_DELAY) before it retries a failing start."""
    monkeypatch.setattr(_processes.pool, "START_RETRY_DELAY", seconds)


def default_executor() -> ProcessExecutor | None:
    """The executor to_process runs in; None until it is first needed."""
    return _processes.executor._default


def pool_of(executor: ProcessExecutor) -> Any:
    """The pool behind ``executor`` (its lock, its workers, its all_exited event)."""
    return executor._pool


def worker_of(executor: ProcessExecutor, pid: int) -> Any:
    """The parent's side of the worker process ``pid`` of ``executor``."""
    return next(worker for worker in pool_of(executor).workers if worker.pid == pid)
