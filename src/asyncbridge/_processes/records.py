"""The parent's records of the pool's work: each worker process, each call on its way, and their states.

Plain records, with no behaviour beyond closing a worker's pipes: the pool
(:mod:`.pool`) and its manager thread (:mod:`.manager`) change them, under the
pool's lock where its docstring says so.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
from collections.abc import Callable
from typing import Any

from .._backends import Inbox
from .._call import Call, CallExecutor, FutureCall
from .framing import FrameReader
from .launch import LaunchedProcess, Subprocess

__all__ = [
    "BUSY",
    "DEAD",
    "IDLE",
    "KILLED",
    "MANAGER",
    "STARTING",
    "STOPPING",
    "Job",
    "SubmittedCall",
    "WorkerProcess",
]

MANAGER: object = object()  # a reply pipe's owner: the manager thread (else a loop's inbox, or None: nobody)

# Worker states. STARTING -> IDLE <-> BUSY -> STOPPING -> DEAD; KILLED when a
# cancelled call's worker was killed; any state -> DEAD when the process exits.
STARTING = 0
IDLE = 1
BUSY = 2
STOPPING = 3
KILLED = 4
DEAD = 5


class Job:
    """One call on its way through the pool: the call, its pickled frame, its worker.

    The frame is kept until the call is done, to send it again if its worker
    turns out to have died before it could be sent.
    """

    __slots__ = ("call", "frame", "worker")

    def __init__(self, call: Call, frame: bytes) -> None:
        self.call = call
        self.frame = frame
        self.worker: WorkerProcess | None = None


class WorkerProcess:
    """The parent's side of one worker process."""

    __slots__ = (
        "alive_fd",
        "deadline",
        "idle_since",
        "job",
        "loop",
        "outbuf",
        "owner",
        "pid",
        "process",
        "replies",
        "reply_closing",
        "reply_fd",
        "request_fd",
        "start_failure",
        "state",
        "tasks",
        "unreached",
        "watched",
        "writing",
    )

    def __init__(self, process: LaunchedProcess, request_fd: int, reply_fd: int, alive_fd: int) -> None:
        self.process = process
        self.pid = process.pid
        self.request_fd = request_fd
        self.reply_fd = reply_fd
        self.alive_fd = alive_fd  # never written: the worker exits when it closes
        self.state = STARTING
        self.job: Job | None = None
        self.tasks = 0
        self.outbuf: memoryview | None = None  # the rest of a frame the pipe had no room for
        self.writing = False  # registered with the selector for write readiness
        self.replies = FrameReader()  # splits what reply_fd delivers into frames
        self.idle_since = 0.0
        self.deadline = 0.0  # when a STARTING (start_timeout) or STOPPING (STOP_GRACE) worker gets killed
        self.start_failure: tuple[str, BaseException | None] | None = None
        self.unreached = False  # a write found the worker's end of the pipe closed
        # Who reads the reply pipe: MANAGER, an asyncio loop, or None (nobody:
        # an idle worker whose last call was read on a loop). Under the pool lock.
        self.owner: object = MANAGER
        self.watched = False  # reply_fd is registered with the manager's selector (manager thread only)
        self.loop: Inbox | None = None  # the inbox of the loop whose add_reader watches reply_fd
        self.reply_closing = False  # dead: reply_fd is closed by self.loop once it stops watching it

    def close_fds(self) -> None:
        """Close the pipes and the process handle; reply_fd later, by its loop, if one watches it."""
        fds = (
            (self.request_fd, self.alive_fd)
            if self.loop is not None
            else (self.request_fd, self.reply_fd, self.alive_fd)
        )
        self.reply_closing = self.loop is not None
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.process.close()

    def forget(self) -> None:
        """Close this process's copies of the fds, in a forked child that does not own the worker."""
        for fd in (self.request_fd, self.reply_fd, self.alive_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        if isinstance(self.process, Subprocess):
            self.process.close()  # our own pidfd; a multiprocessing sentinel is multiprocessing's


class SubmittedCall(FutureCall):
    """A call made through ``submit()``: its outcome goes to a Future."""

    __slots__ = ()

    def __init__(
        self,
        future: cf.Future[Any],
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        executor: CallExecutor,
    ) -> None:
        super().__init__(future, fn, args, kwargs, None, executor)

    def claim(self) -> bool:
        """Mark the Future running (it may be already: a re-queued call); False if it was cancelled."""
        return self.future.running() or self.future.set_running_or_notify_cancel()
