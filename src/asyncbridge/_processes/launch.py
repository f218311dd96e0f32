"""Starting a worker process: its three pipes, and the process itself, by either launcher.

The default launcher starts a fresh interpreter with :mod:`subprocess`
(fork+exec: safe in a program that runs threads) that loads :mod:`.worker`
without importing asyncbridge; ``mp_context`` starts workers through a
:mod:`multiprocessing` context instead. Either way the parent gets a
:class:`LaunchedProcess` and its own ends of the pipes. Also here: how many
CPUs this process may use (the default pool size), and how an exit is described.
"""

from __future__ import annotations

import contextlib
import multiprocessing.connection
import multiprocessing.context
import os
import signal
import subprocess
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from typing import Protocol, cast

from .worker import bootstrap_command, serve_connections

__all__ = [
    "LaunchedProcess",
    "MultiprocessingProcess",
    "Subprocess",
    "exit_description",
    "start_worker",
    "usable_cpus",
]


def usable_cpus() -> int:
    """How many CPUs this process may run on."""
    process_cpu_count: Callable[[], int | None] | None = getattr(os, "process_cpu_count", None)
    if process_cpu_count is not None:  # Python 3.13+
        return process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class LaunchedProcess(Protocol):
    """A started worker process, however it was started."""

    pid: int
    sentinel: int | None  # readable once the process has exited; None: rely on the reply pipe's EOF

    def kill(self) -> None: ...
    def wait(self, timeout: float | None) -> int | None: ...
    def close(self) -> None: ...


class Subprocess:
    """A worker started by the default launcher: a fresh interpreter through subprocess."""

    __slots__ = ("pid", "popen", "sentinel")

    def __init__(self, fds: tuple[int, int, int]) -> None:
        self.popen = subprocess.Popen(
            bootstrap_command(fds),
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
        )
        self.pid = self.popen.pid
        self.sentinel: int | None = None
        pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:  # Linux 5.3+
            with contextlib.suppress(OSError):
                self.sentinel = pidfd_open(self.pid)

    def kill(self) -> None:
        self.popen.kill()  # a no-op once the process has been waited for, so never another pid

    def wait(self, timeout: float | None) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.sentinel is not None:
            os.close(self.sentinel)
            self.sentinel = None


class MultiprocessingProcess:
    """A worker started through a multiprocessing context given as ``mp_context``."""

    __slots__ = ("pid", "process", "sentinel")

    def __init__(self, context: multiprocessing.context.BaseContext, fds: tuple[int, int, int]) -> None:
        Connection = multiprocessing.connection.Connection
        # Connections are how multiprocessing hands file descriptors to a child.
        conns = [Connection(os.dup(fd)) for fd in fds]
        # BaseContext has no Process in typeshed; every concrete context has one.
        new_process = cast(
            "Callable[..., BaseProcess]",
            context.Process,  # type: ignore[attr-defined]  # pyright: ignore[reportAttributeAccessIssue, reportUnknownMemberType]
        )
        try:
            process = new_process(target=serve_connections, args=tuple(conns), name="asyncbridge-worker")
            process.start()
        finally:
            for conn in conns:
                conn.close()
        self.process: BaseProcess = process
        assert process.pid is not None
        self.pid: int = process.pid
        self.sentinel: int | None = process.sentinel

    def kill(self) -> None:
        self.process.kill()

    def wait(self, timeout: float | None) -> int | None:
        self.process.join(timeout)
        return self.process.exitcode

    def close(self) -> None:
        if self.process.exitcode is not None:
            self.process.close()


# The parent's ends of the pipes of workers being started. With mp_context
# "fork" the child copies every fd: these must be closed there (the child's own
# included, or it would keep its alive pipe open and outlive its parent).
_launching: set[int] = set()


def start_worker(context: multiprocessing.context.BaseContext | None) -> tuple[LaunchedProcess, int, int, int]:
    """Start a worker process (through ``context`` if not None) on three new pipes.

    Returns the process and the parent's ends of its pipes: the request pipe
    (non-blocking), the reply pipe (non-blocking), and the pipe the worker
    watches for its parent's death (never written). On failure, every pipe is
    closed and the error raised.
    """
    request_r = request_w = reply_r = reply_w = alive_r = alive_w = -1
    try:
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        alive_r, alive_w = os.pipe()
        fds = (request_r, reply_w, alive_r)
        ours = (request_w, reply_r, alive_w)
        _launching.update(ours)
        try:
            process: LaunchedProcess = Subprocess(fds) if context is None else MultiprocessingProcess(context, fds)
        finally:
            _launching.difference_update(ours)
    except BaseException:
        for fd in (request_r, request_w, reply_r, reply_w, alive_r, alive_w):
            if fd >= 0:
                os.close(fd)
        raise
    for fd in (request_r, reply_w, alive_r):  # the child's ends
        os.close(fd)
    os.set_blocking(request_w, False)
    os.set_blocking(reply_r, False)
    return process, request_w, reply_r, alive_w


def _close_launching_fds_after_fork() -> None:
    for fd in list(_launching):
        with contextlib.suppress(OSError):
            os.close(fd)
    _launching.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_launching_fds_after_fork)


def exit_description(exitcode: int | None) -> str:
    """How a worker process ended, for error messages: its exit code, or the signal that killed it."""
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            return f"killed by signal {-exitcode}"
        return f"killed by signal {-exitcode} ({name})"
    return f"exited with code {exitcode}"
