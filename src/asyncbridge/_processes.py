"""ProcessExecutor and to_process: parallel CPU work that survives crashes, timeouts and cancellation.

Design, from the peers' faults (docs/processes.md tells the user's side):

- Workers are fresh interpreters started with :mod:`subprocess` (fork+exec:
  safe in a program that runs threads), running ``_process_worker.py``
  without importing asyncbridge, and importing the parent's ``__main__``
  only if a call needs it. That makes the first result arrive several times
  sooner than with multiprocessing's spawn or forkserver, which import the
  parent's main module (and all it imports) before the first call.
  ``mp_context`` starts workers through multiprocessing instead.
- Calls and results travel on pipes of their own, never the worker's stdout or
  stderr, which stay the parent's.
- A call is pickled in the caller's thread before any worker is involved: a
  pickling error is raised at once, names what failed, and costs nothing.
- One manager thread per executor (started on demand, gone when no worker is
  left) starts workers and waits, with a selector, on every worker's reply
  pipe and on its pidfd (a file descriptor that becomes readable when the
  process exits), so a death is seen at once and fails only the call that
  worker ran; the worker is replaced when a queued call needs one.
- A caller that finds an idle worker writes the call to it straight away (no
  thread hop); idle workers form a stack, so the most recently used runs the
  next call and the others can reach their idle timeout.
- A call awaited on a loop that can watch file descriptors (asyncio, uvloop:
  ``Inbox.reads_fds``) that finds an idle worker has its reply read, decoded
  and delivered by that loop itself (``Inbox.add_reader`` on the worker's
  reply pipe): a round trip wakes two threads, not three. One
  reader owns a reply pipe at a time (``_Worker.owner``: the manager, a loop's inbox,
  or nobody while the worker is idle), changed under the pool lock. A loop
  reads only under the lock and while it owns the pipe, so the manager can
  take a pipe over at any moment (the worker exited, the loop closed,
  shutdown) with no frame read in part by both. Only the manager takes a pipe
  from the manager (when the call ends), so its own reads need no lock. A
  loop's registration is removed only in its own thread, so a pipe it still
  watches is closed there too. Everything else (pidfds, starts, stops, trio
  and submit() callers) stays with the manager.
- Cancelling an await kills the worker that runs it (SIGKILL to that child
  only), from the event loop thread, without waiting for anything.
- Workers that fail to start several times in a row stop the respawning:
  calls fail at once with :class:`WorkerStartError` saying why, and a new
  start is tried at most once per ``START_RETRY_DELAY``.
"""

from __future__ import annotations

import atexit
import concurrent.futures as cf
import contextlib
import multiprocessing.connection
import multiprocessing.context
import os
import pickle
import selectors
import signal
import subprocess
import sys
import threading
import time
import types
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from importlib import import_module
from multiprocessing.process import BaseProcess
from typing import Any, Protocol, TypeVar, cast

from typing_extensions import ParamSpec

from . import _process_worker
from ._backends import Inbox, current_inbox
from ._call import DROPPED, PENDING, RUNNING, Call, CallExecutor, FutureCall, logger
from ._checks import check_count
from ._exceptions import ExecutorShutdownError, WorkerCrashedError, WorkerStartError
from ._executor import ExecutorBase, wait_off_loop
from ._process_worker import HEADER_SIZE, PROTOCOL, RAISED, READY, RESULT, START_FAILED
from ._statistics import ExecutorStatistics

__all__ = ["ProcessExecutor", "to_process"]

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_IDLE_TIMEOUT = 300.0  # seconds; the same as anyio's to_process. Not tuned
MAX_START_FAILURES = 3  # failed starts in a row before calls fail fast; a guess
START_RETRY_DELAY = 1.0  # seconds between start attempts once starts keep failing; arbitrary
STOP_GRACE = 10.0  # seconds a worker asked to exit may take before it is killed; arbitrary

_STOP_FRAME = bytes(HEADER_SIZE)  # an empty frame: "exit now"
_MANAGER: object = object()  # a reply pipe's owner: the manager thread (else a loop's inbox, or None: nobody)
LOOP_CHECK_INTERVAL = 1.0  # seconds between the manager's checks that a loop reading a reply still runs
_READ_SIZE = 65536

# Worker states. STARTING -> IDLE <-> BUSY -> STOPPING -> DEAD; KILLED when a
# cancelled call's worker was killed; any state -> DEAD when the process exits.
_STARTING = 0
_IDLE = 1
_BUSY = 2
_STOPPING = 3
_KILLED = 4
_DEAD = 5


def _usable_cpus() -> int:
    process_cpu_count: Callable[[], int | None] | None = getattr(os, "process_cpu_count", None)
    if process_cpu_count is not None:  # Python 3.13+
        return process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _RemoteTraceback(Exception):
    """The worker's traceback, set as ``__cause__`` of an exception raised in a worker."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


# -- pickling in the caller's thread -------------------------------------------


_cloudpickle_module: Any = None
_cloudpickle_checked = False


def _cloudpickle() -> Any:
    """The cloudpickle module if it is installed, else None (looked up once)."""
    global _cloudpickle_module, _cloudpickle_checked
    if not _cloudpickle_checked:
        _cloudpickle_module = _process_worker._cloudpickle()
        _cloudpickle_checked = True
    return _cloudpickle_module


def _describe_function(fn: object) -> str:
    name = getattr(fn, "__qualname__", None)
    if isinstance(name, str):
        return f"{name}()"
    return repr(fn)


def _main_is_interactive() -> bool:
    main = sys.modules.get("__main__")
    if isinstance(main, _process_worker.LazyMain):
        return False
    return main is None or (getattr(main, "__file__", None) is None and getattr(main, "__spec__", None) is None)


def _dumps(obj: object, pieces: Callable[[], list[tuple[str, object]]], fn: object) -> bytes:
    """Pickle ``obj`` for a worker; on failure raise a TypeError or PicklingError naming the culprit.

    ``pieces`` lists the parts of ``obj`` with a name for each; they are
    pickled one by one only after a failure, to find the one to blame, so the
    common path is a single ``pickle.dumps``.
    """
    error: Exception | None = None
    by_value = getattr(fn, "__module__", None) == "__main__" and _main_is_interactive()
    if not by_value:
        try:
            return pickle.dumps(obj, PROTOCOL)
        except Exception as exc:
            error = exc
    cloudpickle = _cloudpickle()
    if cloudpickle is not None:
        try:
            data: bytes = cloudpickle.dumps(obj, PROTOCOL)
        except Exception as exc:
            error = exc
        else:
            return data
    elif by_value:
        raise pickle.PicklingError(
            f"cannot send the function {_describe_function(fn)} to a worker process: it was defined in "
            "an interactive session, so a worker cannot import it by name; define it in a module, "
            "or install cloudpickle (pip install cloudpickle) to send it by value"
        )
    assert error is not None
    raise _pickling_error(pieces(), error, cloudpickle) from error


def _pickling_error(pieces: list[tuple[str, object]], error: Exception, cloudpickle: Any) -> Exception:
    culprit: object = None
    label = "the call"  # if each piece pickles alone but not all together: blame the whole
    for piece_label, piece in pieces:
        try:
            if cloudpickle is None:
                pickle.dumps(piece, PROTOCOL)
            else:
                cloudpickle.dumps(piece, PROTOCOL)
        except Exception:
            culprit, label = piece, piece_label
            break
    if culprit is not None and not isinstance(culprit, types.FunctionType):
        label += f" (a {_process_worker._type_name(culprit)})"
    by_name = isinstance(culprit, types.FunctionType) and cloudpickle is None
    hint = ""
    if by_name:
        hint = (
            "; only functions importable by name can be sent (not lambdas, closures or functions "
            "defined inside functions): define it at module level, or install cloudpickle "
            "(pip install cloudpickle) to send it by value"
        )
    kind = pickle.PicklingError if by_name or isinstance(error, pickle.PicklingError) else TypeError
    return kind(f"cannot send {label} to a worker process: {type(error).__name__}: {error}{hint}")


def _call_pieces(fn: object, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[tuple[str, object]]:
    pieces: list[tuple[str, object]] = [(f"the function {_describe_function(fn)}", fn)]
    pieces += [(f"positional argument {i}", arg) for i, arg in enumerate(args)]
    pieces += [(f"keyword argument {name!r}", arg) for name, arg in kwargs.items()]
    return pieces


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(HEADER_SIZE, "little") + data


# -- worker processes ----------------------------------------------------------


class _Process(Protocol):
    """A started worker process, however it was started."""

    pid: int
    sentinel: int | None  # readable once the process has exited; None: rely on the reply pipe's EOF

    def kill(self) -> None: ...
    def wait(self, timeout: float | None) -> int | None: ...
    def close(self) -> None: ...


class _Subprocess:
    """A worker started by the default launcher: a fresh interpreter through subprocess."""

    __slots__ = ("pid", "popen", "sentinel")

    def __init__(self, fds: tuple[int, int, int]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-c", _process_worker.BOOTSTRAP, _process_worker.__file__, *map(str, fds)],
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


class _MultiprocessingProcess:
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
            process = new_process(
                target=_process_worker.serve_connections, args=tuple(conns), name="asyncbridge-worker"
            )
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


class _Job:
    """One call on its way through the pool: the call, its pickled frame, its worker.

    The frame is kept until the call is done, to send it again if its worker
    turns out to have died before it could be sent.
    """

    __slots__ = ("call", "frame", "worker")

    def __init__(self, call: Call, frame: bytes) -> None:
        self.call = call
        self.frame = frame
        self.worker: _Worker | None = None


class _Worker:
    """The parent's side of one worker process."""

    __slots__ = (
        "alive_fd",
        "buffer",
        "deadline",
        "idle_since",
        "job",
        "large",
        "large_got",
        "loop",
        "outbuf",
        "owner",
        "pid",
        "process",
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

    def __init__(self, process: _Process, request_fd: int, reply_fd: int, alive_fd: int) -> None:
        self.process = process
        self.pid = process.pid
        self.request_fd = request_fd
        self.reply_fd = reply_fd
        self.alive_fd = alive_fd  # never written: the worker exits when it closes
        self.state = _STARTING
        self.job: _Job | None = None
        self.tasks = 0
        self.outbuf: memoryview | None = None  # the rest of a frame the pipe had no room for
        self.writing = False  # registered with the selector for write readiness
        self.buffer = bytearray()  # reply bytes read but not yet a whole frame
        self.large: bytearray | None = None  # a frame too large for one read, being filled
        self.large_got = 0
        self.idle_since = 0.0
        self.deadline = 0.0  # when a STOPPING worker gets killed
        self.start_failure: tuple[str, BaseException | None] | None = None
        self.unreached = False  # a write found the worker's end of the pipe closed
        # Who reads the reply pipe: _MANAGER, an asyncio loop, or None (nobody:
        # an idle worker whose last call was read on a loop). Under the pool lock.
        self.owner: object = _MANAGER
        self.watched = False  # reply_fd is registered with the manager's selector (manager thread only)
        self.loop: Inbox | None = None  # the inbox of the loop whose add_reader watches reply_fd
        self.reply_closing = False  # dead: reply_fd is closed by self.loop once it stops watching it

    def read_frames(self) -> tuple[list[bytearray], bool]:
        """Read what the reply pipe holds (one read: the selector is level-triggered).

        Returns the whole frames received and whether the pipe reached end of file.
        """
        frames: list[bytearray] = []
        large = self.large
        try:
            if large is not None:
                n = os.readv(self.reply_fd, [memoryview(large)[self.large_got :]])
                if n == 0:
                    return frames, True
                self.large_got += n
                if self.large_got == len(large):
                    frames.append(large)
                    self.large = None
                return frames, False
            data = os.read(self.reply_fd, _READ_SIZE)
        except BlockingIOError:
            return frames, False
        except OSError:
            return frames, True
        if not data:
            return frames, True
        buffer = self.buffer
        buffer += data
        while len(buffer) >= HEADER_SIZE:
            size = int.from_bytes(buffer[:HEADER_SIZE], "little")
            end = HEADER_SIZE + size
            if len(buffer) >= end:
                frames.append(buffer[HEADER_SIZE:end])
                del buffer[:end]
            elif size > _READ_SIZE:  # read the rest straight into a buffer of its own
                large = bytearray(size)
                have = len(buffer) - HEADER_SIZE
                large[:have] = buffer[HEADER_SIZE:]
                self.large, self.large_got = large, have
                buffer.clear()
                break
            else:
                break
        return frames, False

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
        if isinstance(self.process, _Subprocess):
            self.process.close()  # our own pidfd; a multiprocessing sentinel is multiprocessing's


def _exit_description(exitcode: int | None) -> str:
    if exitcode is None:
        return "exit status unknown"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            return f"killed by signal {-exitcode}"
        return f"killed by signal {-exitcode} ({name})"
    return f"exited with code {exitcode}"


# -- the pool ------------------------------------------------------------------


class _FutureCall(FutureCall):
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


class _Pool:
    """The state and manager thread behind a ProcessExecutor.

    Kept apart from the executor object so that an executor dropped without
    ``shutdown()`` can be noticed (by a ``weakref.finalize``) and its workers
    stopped, while the manager thread still holds the pool.
    """

    def __init__(
        self,
        max_workers: int,
        max_tasks_per_child: int | None,
        initializer: bytes | None,
        initializer_name: str,
        context: multiprocessing.context.BaseContext | None,
        idle_timeout: float,
    ) -> None:
        self.max_workers = max_workers
        self.max_tasks_per_child = max_tasks_per_child
        self.initializer = initializer
        self.initializer_name = initializer_name
        self.context = context
        self.idle_timeout = idle_timeout
        # Reentrant: the finalizer of a dropped executor calls begin_shutdown(),
        # and garbage collection may run it in the manager thread at any
        # allocation, lock held or not.
        self.lock = threading.RLock()
        self.workers: list[_Worker] = []  # every worker process not yet waited for
        self.idle: list[_Worker] = []  # most recently used last
        self.pending: deque[_Job] = deque()  # may hold dropped jobs, skipped when reached
        self.alive = 0  # worker processes started or being started, not yet waited for
        self.starting = 0  # of those, the ones not ready yet
        self.queued = 0
        self.running = 0
        self.completed = 0
        self.failed = 0
        self.wait_total = 0.0
        self.wait_max = 0.0
        self.shutdown = False
        self.manager: threading.Thread | None = None
        self.manager_ident: int | None = None
        self.all_exited = threading.Event()
        self.all_exited.set()
        self.wake_r = -1
        self.wake_w = -1
        self.wake_pending = False
        self.start_failures = 0  # in a row
        self.retry_at = 0.0
        self.last_start_failure: tuple[str, BaseException | None] | None = None
        self.launching_fds: tuple[int, ...] = ()  # our ends of the pipes of a worker being started
        _pools.add(self)

    # -- the caller's side -----------------------------------------------------

    def submit(self, call: Call, owner: object) -> None:
        if _process_worker.importing_main():
            raise RuntimeError(
                "a worker process tried to start worker processes while importing the main module; "
                "protect the main script's entry point with: if __name__ == '__main__':"
            )
        fn, args, kwargs = call.fn, call.args, call.kwargs
        job = _Job(call, _frame(_dumps((fn, args, kwargs), lambda: _call_pieces(fn, args, kwargs), fn)))
        call.handle = job
        start_manager = False
        with self.lock:
            if self.shutdown:
                raise ExecutorShutdownError(f"{owner!r} is shut down; create a new executor to run more calls")
            if self.start_failures >= MAX_START_FAILURES and time.monotonic() < self.retry_at:
                raise self._start_error_locked()
            if self.idle:
                self._start_job_locked(self.idle.pop(), job)
                return
            call.enqueued_at = time.monotonic()
            self.pending.append(job)
            self.queued += 1
            self._reclaim_from_closed_loops_locked()  # a worker whose reply nobody will read
            if self.manager is None:
                self._new_manager_locked()
                start_manager = True
            elif self.alive < self.max_workers and self.starting < self.queued:
                self._wake_locked()
        if start_manager:
            assert self.manager is not None
            self.manager.start()

    def drop(self, call: Call) -> bool:
        job: _Job = call.handle
        with self.lock:
            if call.state == PENDING:
                call.state = DROPPED  # stays in the deque; skipped when reached
                self.queued -= 1
            elif call.state == RUNNING and job.worker is not None:
                worker = job.worker
                job.worker = worker.job = None
                self.running -= 1
                worker.state = _KILLED
                worker.outbuf = None
                worker.process.kill()  # only this child; the manager sees it exit and reaps it
                if worker.owner is not _MANAGER:
                    self._set_owner_locked(worker, None)  # the manager reads what is left, at its exit
            else:
                return False  # its reply is being delivered
        call.drop()
        return True

    def begin_shutdown(self, cancel_futures: bool) -> list[Call]:
        dropped: list[Call] = []
        with self.lock:
            self.shutdown = True
            if cancel_futures:
                while self.pending:
                    call = self.pending.popleft().call
                    if call.state == PENDING:
                        call.state = DROPPED
                        dropped.append(call)
                self.queued = 0
            if self.manager is not None:
                self._wake_locked()
            else:
                self._close_wake_pipe_locked()
        return dropped

    def statistics(self) -> ExecutorStatistics:
        with self.lock:
            return ExecutorStatistics(
                max_workers=self.max_workers,
                workers=len(self.workers),
                running=self.running,
                queued=self.queued,
                completed=self.completed,
                failed=self.failed,
                total_wait_time=self.wait_total,
                max_wait_time=self.wait_max,
            )

    # -- shared, under the lock --------------------------------------------------

    def _start_job_locked(self, worker: _Worker, job: _Job) -> bool:
        call = job.call
        if isinstance(call, _FutureCall) and not call.claim():
            call.drop()  # its Future was cancelled while queued
            return False
        call.state = RUNNING
        job.worker = worker
        worker.job = job
        worker.state = _BUSY
        self.running += 1
        self._set_owner_locked(worker, self._reader_for_locked(worker, call))
        self._send_locked(worker, job.frame)
        return True

    # -- who reads a reply pipe (see the module docstring) ------------------------

    def _reader_for_locked(self, worker: _Worker, call: Call) -> object:
        """The inbox of the loop running in this thread if it awaits ``call`` and can read its reply, else _MANAGER."""
        inbox: Inbox | None = call.inbox
        if inbox is None or not inbox.reads_fds or worker.process.sentinel is None or worker.owner is _MANAGER:
            # trio, submit(), no pidfd (the reply pipe's EOF is then the exit signal), or the
            # manager reads this pipe: only the manager takes a pipe from itself (its reads
            # are not under the lock), when the call ends.
            return _MANAGER
        if (worker.loop is None or worker.loop is inbox) and inbox.is_current():
            return inbox
        return _MANAGER

    def _set_owner_locked(self, worker: _Worker, owner: object) -> None:
        """Make ``owner`` (_MANAGER, None, or the inbox of the loop running in this thread) the reply pipe's reader."""
        if owner is not _MANAGER and owner is not None and worker.loop is None:
            inbox = cast(Inbox, owner)
            if inbox.add_reader(worker.reply_fd, self._on_loop_readable, worker, inbox):
                worker.loop = inbox
            else:  # a loop without add_reader
                owner = _MANAGER
        worker.owner = owner
        if owner is _MANAGER and not worker.watched and threading.get_ident() != self.manager_ident:
            self._wake_locked()  # to register the pipe with its selector
        # A manager's registration goes when it next looks (a reply, or its next round).
        if worker.loop is not None and worker.loop is not owner:
            self._unwatch_loop_locked(worker)

    def _reclaim_from_closed_loops_locked(self) -> None:
        """Take over the reply pipes of calls awaited on loops closed since: nobody will read them.

        Checked when a call has to queue and in each round of the manager
        (at least every ``LOOP_CHECK_INTERVAL`` while a loop reads a reply).
        """
        for worker in self.workers:
            owner = worker.owner
            if owner is not _MANAGER and owner is not None and cast(Inbox, owner).is_closed():
                self._set_owner_locked(worker, _MANAGER)

    def _unwatch_loop_locked(self, worker: _Worker) -> None:
        """Remove the add_reader of ``worker.loop``: now in its thread, else soon by a callback there."""
        loop = worker.loop
        assert loop is not None
        if loop.is_current():
            self._remove_reader_locked(worker, loop)
            return
        try:
            loop.call_soon_threadsafe(self._loop_unwatch, worker, loop)
        except RuntimeError:  # the loop is closed: its registration went with it
            worker.loop = None
            self._close_reply_if_dead_locked(worker)

    def _loop_unwatch(self, worker: _Worker, loop: Inbox) -> None:
        with self.lock:
            if worker.loop is loop and worker.owner is not loop:
                self._remove_reader_locked(worker, loop)

    def _remove_reader_locked(self, worker: _Worker, loop: Inbox) -> None:
        loop.remove_reader(worker.reply_fd)
        worker.loop = None
        self._close_reply_if_dead_locked(worker)

    def _close_reply_if_dead_locked(self, worker: _Worker) -> None:
        if worker.reply_closing:
            worker.reply_closing = False
            with contextlib.suppress(OSError):
                os.close(worker.reply_fd)

    def _on_loop_readable(self, worker: _Worker, loop: Inbox) -> None:
        """On ``loop``: the reply pipe of a worker running a call awaited here has data (or EOF)."""
        job: _Job | None = None
        with self.lock:
            if worker.owner is not loop:  # taken over (by the manager) since
                if worker.loop is loop:
                    self._remove_reader_locked(worker, loop)
                return
            frames, eof = worker.read_frames()
            if frames:  # the reply to its call: the one frame a worker sends while running one
                job = worker.job
                if job is not None:
                    self._job_done_locked(worker, job)  # may give it this loop's next call
                if worker.job is None:
                    self._set_owner_locked(worker, None)
            if eof:  # it died or closed its pipe: the manager reports the exit
                self._set_owner_locked(worker, _MANAGER)
        if job is not None:
            call = job.call
            kind = self._set_outcome(worker, call, frames[0])
            if kind != RESULT:
                with self.lock:
                    self.failed += 1
            call.finish_here()  # we are on the loop that awaits it: wake it now

    def _job_done_locked(self, worker: _Worker, job: _Job) -> None:
        """``worker`` sent the reply to ``job``: count the call and free the worker (it may take a queued call)."""
        worker.job = job.worker = None
        worker.tasks += 1
        self.running -= 1
        self.completed += 1
        self._worker_free_locked(worker, time.monotonic())

    def _send_locked(self, worker: _Worker, frame: bytes) -> None:
        # Under the lock, so the manager cannot close (and the OS reuse) the fd
        # meanwhile. Non-blocking: what the pipe has no room for, the manager
        # writes as the worker reads.
        try:
            n = os.write(worker.request_fd, frame)
        except BlockingIOError:
            n = 0
        except OSError:  # the worker is gone (it died idle, say); its exit is being reported
            worker.unreached = True
            return
        if n < len(frame):
            worker.outbuf = memoryview(frame)[n:]
            self._wake_locked()

    def _wake_locked(self) -> None:
        if not self.wake_pending:
            self.wake_pending = True
            with contextlib.suppress(BlockingIOError):
                os.write(self.wake_w, b"\0")

    def _new_manager_locked(self) -> None:
        if self.wake_r < 0:
            self.wake_r, self.wake_w = os.pipe()
            os.set_blocking(self.wake_r, False)
            os.set_blocking(self.wake_w, False)
        self.wake_pending = False
        self.all_exited.clear()
        self.manager = threading.Thread(target=self._manage, name="asyncbridge-process-manager", daemon=True)

    def _close_wake_pipe_locked(self) -> None:
        if self.wake_r >= 0:
            os.close(self.wake_r)
            os.close(self.wake_w)
            self.wake_r = self.wake_w = -1

    def _start_error_locked(self) -> WorkerStartError:
        reason, cause = self.last_start_failure or ("unknown", None)
        error = WorkerStartError(
            f"worker processes failed to start {self.start_failures} times in a row; the last one: "
            f"{reason}. Calls fail at once until a start succeeds (the next attempt is made for a "
            f"call submitted {START_RETRY_DELAY:g} s after the last failure)"
        )
        error.__cause__ = cause
        return error

    # -- the manager thread --------------------------------------------------------

    def _manage(self) -> None:
        selector = selectors.DefaultSelector()
        with self.lock:
            self.manager_ident = threading.get_ident()
            selector.register(self.wake_r, selectors.EVENT_READ, None)
        try:
            while self._manage_once(selector):
                pass
        except BaseException:  # a bug here must not leave callers waiting forever
            logger.exception("the process manager thread failed; killing its worker processes")
            self._fail_everything()
            raise
        finally:
            selector.close()

    def _manage_once(self, selector: selectors.BaseSelector) -> bool:
        """One round: start, stop and feed workers, then wait for an event. False: exit."""
        now = time.monotonic()
        timeout: float | None = None
        to_register: list[_Worker] = []
        stranded: Sequence[tuple[Call, BaseException]] = ()
        with self.lock:
            self.wake_pending = False
            # Stop idle workers that are no longer wanted, oldest first.
            idle = self.idle
            while idle and (self.shutdown or idle[0].idle_since + self.idle_timeout <= now):
                self._stop_locked(idle.pop(0), now)
            if idle:
                timeout = idle[0].idle_since + self.idle_timeout - now
            for worker in self.workers:
                if worker.state == _STOPPING:
                    if worker.deadline <= now:
                        worker.state = _KILLED
                        worker.process.kill()
                    else:
                        left = worker.deadline - now
                        timeout = left if timeout is None else min(timeout, left)
                if worker.outbuf is not None and not worker.writing:
                    to_register.append(worker)
                owner = worker.owner
                if owner is not _MANAGER and owner is not None:  # a loop reads its reply
                    if self.shutdown:  # the loop may be the one blocked in shutdown(wait=True)
                        self._set_owner_locked(worker, _MANAGER)
                    else:
                        timeout = LOOP_CHECK_INTERVAL if timeout is None else min(timeout, LOOP_CHECK_INTERVAL)
            self._reclaim_from_closed_loops_locked()
            for worker in self.workers:
                if (worker.owner is _MANAGER) != worker.watched:
                    worker.watched = not worker.watched
                    if worker.watched:
                        selector.register(worker.reply_fd, selectors.EVENT_READ, worker)
                    else:
                        selector.unregister(worker.reply_fd)
            # Start workers for queued calls, within the bound.
            launches = min(self.queued - self.starting, self.max_workers - self.alive)
            if self.start_failures >= MAX_START_FAILURES:  # one attempt at a time, not before retry_at
                launches = min(launches, 1) if not self.starting and now >= self.retry_at else 0
            launches = max(launches, 0)
            self.alive += launches
            self.starting += launches
            exiting = not self.alive
            if exiting:
                # Calls can be queued here only while starts are held back
                # after failures (a call re-queued from a worker that died):
                # fail them as the calls queued at the last failure were.
                stranded = [(job.call, self._start_error_locked()) for job in self._take_queued_locked()]
                self.pending.clear()  # only dropped jobs were left in it
                self.manager = None
                self.manager_ident = None
                if self.shutdown:
                    self._close_wake_pipe_locked()
                self.all_exited.set()
        if exiting:
            self._fail_calls(stranded)
            return False
        for worker in to_register:
            worker.writing = True
            selector.register(worker.request_fd, selectors.EVENT_WRITE, worker)
        launched = [self._launch(selector) for _ in range(launches)]
        if not all(launched):
            return True  # a failed launch changed the plan (retry, or give up): no event will say so
        for key, _events in selector.select(timeout):
            worker = key.data
            if worker is None:
                try:
                    while os.read(self.wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            elif worker.state == _DEAD:
                continue  # reported earlier in this round
            elif key.fd == worker.request_fd:
                self._write_more(worker, selector)
            else:
                if key.fd == worker.reply_fd:
                    if worker.owner is not _MANAGER:  # a loop reads it now, or nobody
                        with self.lock:  # so that a caller making it ours again sees it unwatched
                            if worker.owner is not _MANAGER:
                                worker.watched = False
                                selector.unregister(worker.reply_fd)
                                continue
                    frames, eof = worker.read_frames()  # ours: only this thread takes it from us
                    for frame in frames:
                        self._on_frame(worker, frame)
                else:  # the pidfd: the process has exited
                    eof = True
                if eof:
                    self._on_exit(worker, selector)
        return True

    def _launch(self, selector: selectors.BaseSelector) -> bool:
        """Start a worker process; False if that failed (counted as a failed start)."""
        request_r = request_w = reply_r = reply_w = alive_r = alive_w = -1
        try:
            request_r, request_w = os.pipe()
            reply_r, reply_w = os.pipe()
            alive_r, alive_w = os.pipe()
            fds = (request_r, reply_w, alive_r)
            # With mp_context "fork" the child copies every fd: our ends of
            # its own pipes must be closed there (see reset_after_fork).
            self.launching_fds = (request_w, reply_r, alive_w)
            if self.context is None:
                process: _Process = _Subprocess(fds)
            else:
                process = _MultiprocessingProcess(self.context, fds)
        except BaseException as exc:
            self.launching_fds = ()
            for fd in (request_r, request_w, reply_r, reply_w, alive_r, alive_w):
                if fd >= 0:
                    os.close(fd)
            with self.lock:  # give back the place it held
                self.alive -= 1
                self.starting -= 1
            reason = f"starting a worker process failed: {type(exc).__name__}: {exc}"
            self._fail_calls(self._start_failed((reason, exc)))
            if not isinstance(exc, Exception):
                raise
            return False
        self.launching_fds = ()
        for fd in (request_r, reply_w, alive_r):  # the child's ends
            os.close(fd)
        os.set_blocking(request_w, False)
        os.set_blocking(reply_r, False)
        worker = _Worker(process, request_w, reply_r, alive_w)
        selector.register(reply_r, selectors.EVENT_READ, worker)
        worker.watched = True
        if process.sentinel is not None:
            selector.register(process.sentinel, selectors.EVENT_READ, worker)
        init = pickle.dumps((sys.path, _main_reference(), self.initializer), PROTOCOL)
        with self.lock:
            self.workers.append(worker)
            self._send_locked(worker, _frame(init))
        return True

    def _write_more(self, worker: _Worker, selector: selectors.BaseSelector) -> None:
        with self.lock:
            outbuf = worker.outbuf
            if outbuf is not None:
                try:
                    outbuf = outbuf[os.write(worker.request_fd, outbuf) :]
                except BlockingIOError:
                    pass
                except OSError:  # the worker is gone; its exit is being reported
                    outbuf = None
                    worker.unreached = True
                worker.outbuf = outbuf if outbuf else None
            if worker.outbuf is None:
                worker.writing = False
                selector.unregister(worker.request_fd)

    def _on_frame(self, worker: _Worker, frame: bytearray) -> None:
        message: tuple[Any, ...] = ()
        unpickling_error: Exception | None = None
        try:
            message = pickle.loads(frame)
        except Exception as exc:  # e.g. the result's class cannot be imported here
            unpickling_error = exc
        kind: int = message[0] if message else -1
        if kind == READY:
            with self.lock:
                if worker.state == _STARTING:
                    self.starting -= 1
                    self.start_failures = 0
                    self._worker_free_locked(worker, time.monotonic())
            return
        if kind == START_FAILED:
            _, remote_exc, text, description = message
            reason = f"the initializer {self.initializer_name} raised {description}"
            worker.start_failure = (reason, _with_remote_traceback(remote_exc, text, description))
            return
        with self.lock:
            job = worker.job
            if job is not None:
                if kind != RESULT:
                    self.failed += 1
                self._job_done_locked(worker, job)
                inbox: Inbox | None = job.call.inbox
                if worker.state == _IDLE and inbox is not None and inbox.reads_fds:
                    worker.owner = None  # the next such call may read its reply on its loop
        if job is None:
            return  # its caller was cancelled just now
        call = job.call
        self._set_outcome(worker, call, frame, message, unpickling_error)
        call.finish()

    def _set_outcome(
        self,
        worker: _Worker,
        call: Call,
        frame: bytearray,
        message: tuple[Any, ...] | None = None,
        unpickling_error: Exception | None = None,
    ) -> int:
        """Set the outcome of ``call`` from its reply (decoded here unless ``message``); return its kind."""
        if message is None:
            decoded: tuple[Any, ...] = ()
            try:
                decoded = pickle.loads(frame)
            except Exception as exc:  # e.g. the result's class cannot be imported here
                unpickling_error = exc
            message = decoded
        kind: int = message[0] if message else -1
        if kind == RESULT:
            call.result = message[1]
        elif kind == RAISED:
            _, remote_exc, text, description = message
            call.exc = _with_remote_traceback(remote_exc, text, description)
        else:
            error = pickle.UnpicklingError(
                f"the reply of worker process {worker.pid} to {_describe_function(call.fn)} could not be "
                f"unpickled: {type(unpickling_error).__name__}: {unpickling_error}"
            )
            error.__cause__ = unpickling_error
            call.exc = error
        return kind

    def _worker_free_locked(self, worker: _Worker, now: float) -> None:
        """Give a worker that just became free its next call, or stop it, or park it."""
        if worker.state not in (_STARTING, _BUSY):
            return  # being killed or stopped
        if self.max_tasks_per_child is not None and worker.tasks >= self.max_tasks_per_child:
            self._stop_locked(worker, now)
            return
        pending = self.pending
        while pending:
            job = pending.popleft()
            call = job.call
            if call.state != PENDING:
                continue
            self.queued -= 1
            waited = now - call.enqueued_at
            self.wait_total += waited
            if waited > self.wait_max:
                self.wait_max = waited
            if self._start_job_locked(worker, job):
                return
        if self.shutdown:
            self._stop_locked(worker, now)
            return
        worker.state = _IDLE
        worker.idle_since = now
        self.idle.append(worker)

    def _stop_locked(self, worker: _Worker, now: float) -> None:
        worker.state = _STOPPING
        worker.deadline = now + STOP_GRACE
        self._send_locked(worker, _STOP_FRAME)
        if threading.get_ident() != self.manager_ident:  # a loop recycled it: the manager keeps the deadline
            self._wake_locked()

    def _on_exit(self, worker: _Worker, selector: selectors.BaseSelector) -> None:
        """The worker process has exited (or closed its reply pipe): report it and clean up."""
        watched = worker.reply_fd if worker.watched else None
        worker.watched = False
        for fd in (watched, worker.process.sentinel, worker.request_fd if worker.writing else None):
            if fd is not None:
                selector.unregister(fd)
        exitcode = worker.process.wait(STOP_GRACE)
        if exitcode is None:  # it closed its pipe yet lives on: make sure
            worker.process.kill()
            exitcode = worker.process.wait(None)
        # A reply written just before the end (read from the pipe,
        # which keeps it) still counts, whoever was to read it.
        if worker.owner is not _MANAGER:
            with self.lock:  # a loop reads (under the lock) only while it owns the pipe
                self._set_owner_locked(worker, _MANAGER)
        while True:
            frames, eof = worker.read_frames()
            for frame in frames:
                self._on_frame(worker, frame)
            if eof or not frames:
                break
        with self.lock:
            state = worker.state
            worker.state = _DEAD
            self.workers.remove(worker)
            self.alive -= 1
            if state == _IDLE:
                self.idle.remove(worker)
            job = worker.job
            if job is not None:
                worker.job = job.worker = None
                self.running -= 1
                if worker.unreached:  # it died before the call could reach it: run it elsewhere
                    job.call.state = PENDING
                    self.pending.appendleft(job)
                    self.queued += 1
                    job = None
                else:
                    self.completed += 1
                    self.failed += 1
            if state == _STARTING:
                self.starting -= 1
            worker.close_fds()
        if job is not None:
            call = job.call
            call.exc = WorkerCrashedError(
                f"worker process {worker.pid} died while running {_describe_function(call.fn)}: "
                f"{_exit_description(exitcode)}",
                pid=worker.pid,
                exitcode=exitcode,
            )
            call.finish()
        if state == _STARTING:
            reason = worker.start_failure or (
                f"worker process {worker.pid} {_exit_description(exitcode)} before it was ready "
                "(its stderr may tell why)",
                None,
            )
            self._fail_calls(self._start_failed(reason))

    def _start_failed(self, reason: tuple[str, BaseException | None]) -> list[tuple[Call, BaseException]]:
        """Count a failed start; after too many in a row, take every queued call to fail it."""
        failed: list[tuple[Call, BaseException]] = []
        with self.lock:
            self.start_failures += 1
            self.last_start_failure = reason
            if self.start_failures >= MAX_START_FAILURES:
                self.retry_at = time.monotonic() + START_RETRY_DELAY
                failed = [(job.call, self._start_error_locked()) for job in self._take_queued_locked()]
        return failed

    def _take_queued_locked(self) -> list[_Job]:
        """Empty the queue; return its live jobs, claimed (to be failed, not run)."""
        jobs: list[_Job] = []
        while self.pending:
            job = self.pending.popleft()
            if job.call.state == PENDING:
                job.call.state = RUNNING
                jobs.append(job)
        self.queued = 0
        return jobs

    def _fail_calls(self, failed: Sequence[tuple[Call, BaseException]]) -> None:
        for call, error in failed:
            if isinstance(call, _FutureCall) and not call.claim():
                call.drop()  # its Future was cancelled meanwhile
                continue
            call.fail(error)

    def reset_after_fork(self) -> None:
        """In a child made by ``os.fork()``: forget the parent's workers, keep the settings.

        Without this the child would write calls to its parent's workers (and
        read their replies in a muddle), and hold their pipes open. The child
        starts workers of its own when it next makes a call. This also runs in
        a worker started with ``mp_context`` "fork", where it closes the
        parent's ends of the worker's own pipes.
        """
        self.lock = threading.RLock()
        for worker in self.workers:
            worker.forget()
        for fd in self.launching_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.launching_fds = ()
        self.workers, self.idle, self.pending = [], [], deque()
        self.alive = self.starting = self.queued = self.running = 0
        self.manager, self.manager_ident = None, None
        self.all_exited = threading.Event()
        self.all_exited.set()
        self._close_wake_pipe_locked()
        self.wake_pending = False

    def _fail_everything(self) -> None:
        calls: list[Call] = []
        with self.lock:
            self.shutdown = True
            workers, self.workers, self.idle = self.workers, [], []
            for worker in workers:
                worker.state = _DEAD
                worker.process.kill()
                if worker.job is not None:
                    calls.append(worker.job.call)
                    worker.job = None
            while self.pending:
                call = self.pending.popleft().call
                if call.state == PENDING:
                    calls.append(call)
            self.alive = self.starting = self.queued = self.running = 0
        for worker in workers:
            worker.process.wait(None)
            with self.lock:
                worker.close_fds()
                if worker.loop is not None:
                    self._unwatch_loop_locked(worker)
        error = ExecutorShutdownError("the executor failed (see the log) and shut down")
        self._fail_calls([(call, error) for call in calls])
        with self.lock:
            self.manager = None
            self.manager_ident = None
            self._close_wake_pipe_locked()
            self.all_exited.set()


def _with_remote_traceback(exc: BaseException | None, text: str, description: str) -> BaseException:
    """The exception a worker sent back, its traceback attached as the cause (as the stdlib does)."""
    if exc is None:  # it could not cross: a stand-in that says what it was
        exc = RuntimeError(f"the worker process raised {description}")
    exc.__cause__ = _RemoteTraceback(text)
    return exc


def _main_reference() -> tuple[str, str] | None:
    """How a worker can import the parent's ``__main__`` when a call needs it (as spawn does)."""
    main = sys.modules.get("__main__")
    if main is None:
        return None
    if isinstance(main, _process_worker.LazyMain):
        return main.asyncbridge_main_reference
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name != "__main__":
        return ("name", name)
    path = getattr(main, "__file__", None)
    if isinstance(path, str) and os.path.exists(path):
        return ("path", os.path.abspath(path))
    return None


_pools: weakref.WeakSet[_Pool] = weakref.WeakSet()

# multiprocessing's own exit hook waits for every child it started that is not
# a daemon, mp_context workers included; ours must run first and stop them.
# atexit runs hooks last registered first, so make sure its hook is in before ours.
import_module("multiprocessing.util")


def _shutdown_at_exit() -> None:
    """At interpreter exit, shut every pool down as ``shutdown(wait=True)`` would."""
    for pool in list(_pools):
        pool.begin_shutdown(cancel_futures=False)
    for pool in list(_pools):
        if pool.manager_ident != threading.get_ident():
            pool.all_exited.wait()


atexit.register(_shutdown_at_exit)


def _reset_pools_after_fork() -> None:
    global _default_lock
    _default_lock = threading.Lock()
    for pool in list(_pools):
        pool.reset_after_fork()


# -- the public API ------------------------------------------------------------


class ProcessExecutor(ExecutorBase):
    """A bounded pool of worker processes for CPU-bound work, awaited from asyncio, uvloop or trio.

    It is a :class:`concurrent.futures.Executor` (``submit``, ``map``,
    ``shutdown``, ``with``), a drop-in for ``ProcessPoolExecutor``, and adds
    ``await executor.run(fn, *args)``, which :func:`asyncbridge.async_wrap` uses
    with ``async_wrap(executor=ProcessExecutor())``. Equivalent plain code::

        await loop.run_in_executor(ProcessPoolExecutor(max_workers), functools.partial(fn, *args))

    except that here:

    - a worker that dies mid-call (killed, ``os._exit``, a segfault) fails only
      that call, with :class:`WorkerCrashedError` naming its pid and exit code
      or signal, and is replaced; the pool never breaks;
    - cancelling the await (or a timeout) kills the worker running the call and
      ends the await at once; a call still queued is dropped;
    - the call is pickled in the caller's thread first, so an unpicklable
      function, argument or result raises a ``TypeError`` or
      ``pickle.PicklingError`` at once, naming it;
    - what workers print or log goes to the parent's stdout and stderr, and the
      calls travel on pipes of their own;
    - workers that cannot start stop being respawned: calls fail fast with
      :class:`WorkerStartError` saying why, until a start succeeds.

    Workers start on first use (fresh interpreters, which is safe in threaded
    programs; see ``mp_context``), run calls one at a time, are reused most
    recently used first, and exit after ``idle_timeout`` seconds idle.

    Args:
        max_workers: the most worker processes at once; None for the number
            of CPUs this process may use.
        max_tasks_per_child: replace a worker after it ran this many calls
            (a cure for leaky code); None to keep workers.
        initializer: called with ``*initargs`` in each worker before its first
            call; if it raises, the worker does not start.
        initargs: arguments for ``initializer``.
        mp_context: a :mod:`multiprocessing` context to start workers with
            (such as ``multiprocessing.get_context("forkserver")``); None for
            asyncbridge's own launcher, a fresh interpreter by fork+exec that
            imports the main module only when a call needs it.
        idle_timeout: seconds an idle worker waits for a call before it exits.

    Raises:
        TypeError: an argument has the wrong type.
        TypeError | pickle.PicklingError: ``initializer`` or ``initargs`` cannot
            be pickled.
        ValueError: ``max_workers`` or ``max_tasks_per_child`` below 1, or
            ``idle_timeout`` not positive.
        NotImplementedError: on Windows, not supported yet.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        max_tasks_per_child: int | None = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
        mp_context: multiprocessing.context.BaseContext | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        if sys.platform == "win32":  # pragma: no cover
            raise NotImplementedError("ProcessExecutor does not support Windows yet")
        workers = _usable_cpus() if max_workers is None else check_count(max_workers, "max_workers")
        if max_tasks_per_child is not None:
            check_count(max_tasks_per_child, "max_tasks_per_child")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable or None, got {type(initializer).__name__}")
        if not isinstance(initargs, tuple):
            raise TypeError(f"initargs must be a tuple, got {type(initargs).__name__}")
        if mp_context is not None and not isinstance(mp_context, multiprocessing.context.BaseContext):
            raise TypeError(
                "mp_context must be a multiprocessing context (multiprocessing.get_context(...)) or None, "
                f"got {type(mp_context).__name__}"
            )
        if isinstance(idle_timeout, bool) or not isinstance(idle_timeout, (int, float)):
            raise TypeError(f"idle_timeout must be a number of seconds, got {idle_timeout!r}")
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be a positive number of seconds, got {idle_timeout}")
        init: bytes | None = None
        init_name = ""
        if initializer is not None:
            init_name = _describe_function(initializer)
            init = _dumps(
                (initializer, initargs),
                lambda: [
                    (f"the initializer {init_name}", initializer),
                    *((f"initargs[{i}]", arg) for i, arg in enumerate(initargs)),
                ],
                initializer,
            )
        self._pool = _Pool(workers, max_tasks_per_child, init, init_name, mp_context, float(idle_timeout))
        # Dropped without shutdown(): stop the workers once their calls are done.
        self._finalizer = weakref.finalize(self, self._pool.begin_shutdown, False)

    def __repr__(self) -> str:
        pool = self._pool
        state = "shut down" if pool.shutdown else f"{len(pool.workers)} workers"
        return f"<ProcessExecutor max_workers={pool.max_workers}, {state}>"

    @property
    def max_workers(self) -> int:
        """The most worker processes at once."""
        return self._pool.max_workers

    # -- the hand-off, used by the loop side (see _call.CallExecutor) ----------

    def submit_call(self, call: Call, /) -> None:
        self._pool.submit(call, self)

    def drop_call(self, call: Call, /) -> bool:
        return self._pool.drop(call)

    # -- public API -----------------------------------------------------------

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``fn(*args, **kwargs)`` in a worker process and return its result.

        If the awaiting task is cancelled (or times out), the worker running
        the call is killed and the await ends at once with the backend's
        cancellation; a call still waiting for a worker is dropped.

        Raises:
            ExecutorShutdownError: the executor is shut down.
            TypeError | pickle.PicklingError: ``fn``, an argument or the result
                cannot be pickled.
            WorkerCrashedError: the worker died during the call.
            WorkerStartError: worker processes keep failing to start.
            BaseException: whatever ``fn`` raised, with the same type and
                message, the worker's traceback as its ``__cause__``.
        """
        call = Call(fn, args, kwargs, None, self)
        result: T = await current_inbox().run(call)
        return result

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> cf.Future[T]:
        """Schedule ``fn(*args, **kwargs)`` in a worker process; return a Future for its outcome.

        As ``ProcessPoolExecutor.submit``, but a call that cannot be pickled
        raises here at once, and a crashed worker fails only its own call.
        ``Future.cancel()`` keeps the concurrent.futures contract: it cancels
        a call that has not started; use ``await executor.run(...)`` to have
        cancellation kill a running call.

        Raises:
            ExecutorShutdownError: the executor is shut down (a RuntimeError).
            TypeError | pickle.PicklingError: ``fn`` or an argument cannot be pickled.
            WorkerStartError: worker processes keep failing to start.
        """
        future: cf.Future[T] = cf.Future()
        self._pool.submit(_FutureCall(future, fn, args, kwargs, self), self)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; with ``wait``, block until every worker process has exited.

        Running calls finish; queued calls still run, unless ``cancel_futures``
        is true: then their Futures are cancelled and their awaiting callers get
        :class:`ExecutorShutdownError`. Then the workers exit. Safe to call more
        than once. In async code use ``aclose()`` (or ``async with``), which
        waits without blocking the event loop.
        """
        pool = self._pool
        self._finalizer.detach()
        for call in pool.begin_shutdown(cancel_futures):
            if isinstance(call, _FutureCall) and call.future.cancel():
                call.drop()
            else:  # an awaited call, or a Future already running (re-queued after its worker died)
                call.fail(ExecutorShutdownError(f"{self!r} was shut down before this call started"))
        if wait and threading.get_ident() != pool.manager_ident:
            pool.all_exited.wait()

    async def aclose(self) -> None:
        """Shut down like ``shutdown(wait=True)``, without blocking the event loop.

        Cancelling the wait leaves the executor shut down; its workers finish
        their calls and exit on their own.
        """
        self.shutdown(wait=False)
        pool = self._pool
        if pool.all_exited.is_set():
            return
        await wait_off_loop(pool.all_exited)

    def statistics(self) -> ExecutorStatistics:
        """Return a snapshot of the pool's state: workers, running, queued, totals, waits."""
        return self._pool.statistics()


_default_lock = threading.Lock()
_default: ProcessExecutor | None = None
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pools_after_fork)


def _default_executor() -> ProcessExecutor:
    global _default
    executor = _default
    if executor is None:
        with _default_lock:
            if _default is None:
                _default = ProcessExecutor()
            executor = _default
    return executor


async def to_process(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn(*args, **kwargs)`` in a worker process and return its result.

    The one-off form of :class:`ProcessExecutor`, like ``anyio.to_process.run_sync``
    but with keyword arguments::

        digest = await to_process(hash_file, path, algorithm="sha256")

    It uses a default executor with one worker per usable CPU, created on first
    use and shut down at interpreter exit. Cancelling the await kills the
    worker running the call.

    Raises:
        TypeError | pickle.PicklingError: ``fn``, an argument or the result
            cannot be pickled.
        WorkerCrashedError: the worker died during the call.
        WorkerStartError: worker processes keep failing to start.
        BaseException: whatever ``fn`` raised, with the worker's traceback as
            its ``__cause__``.
    """
    executor = _default_executor()
    call = Call(fn, args, kwargs, None, executor)
    result: T = await current_inbox().run(call)
    return result
