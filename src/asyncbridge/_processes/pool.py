"""The pool behind a ProcessExecutor: its state, and what callers do to it under its lock.

Callers submit, drop and count calls here, hand a call to an idle worker
straight away, and read a reply on their own loop; the manager thread
(:mod:`.manager`) does the rest: starting, feeding, reaping workers. Both sides
change the pool only under ``Pool.lock``; methods named ``*_locked`` expect it
held.

Design, from the peers' faults (docs/processes.md tells the user's side):

- Workers are fresh interpreters started with :mod:`subprocess` (fork+exec:
  safe in a program that runs threads), running :mod:`.worker` without
  importing asyncbridge, and importing the parent's ``__main__`` only if a
  call needs it. That makes the first result arrive several times
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
  reply pipe): a round trip wakes two threads, not three. One reader owns a
  reply pipe at a time (``WorkerProcess.owner``: the manager, a loop's inbox,
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
  start is tried at most once per ``START_RETRY_DELAY``. A worker not ready
  within ``start_timeout`` is killed, and that is a failed start too, so no
  start holds calls, shutdown or the interpreter's exit for ever.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing.context
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast

from .._backends import Inbox
from .._call import DROPPED, PENDING, RUNNING, Call
from .._exceptions import ExecutorShutdownError, WorkerStartError
from .._reference import function_reference
from .._statistics import ExecutorStatistics
from .framing import RESULT, STOP_FRAME, framed
from .pickling import call_pieces, dumps, set_outcome
from .records import BUSY, IDLE, KILLED, MANAGER, STARTING, STOPPING, Job, SubmittedCall, WorkerProcess
from .worker import importing_main

__all__ = ["MAX_START_FAILURES", "STOP_GRACE", "Pool"]

MAX_START_FAILURES = 3  # failed starts in a row before calls fail fast; a guess
START_RETRY_DELAY = 1.0  # seconds between start attempts once starts keep failing; arbitrary
STOP_GRACE = 10.0  # seconds a worker asked to exit may take before it is killed; arbitrary


class Pool:
    """The state behind a ProcessExecutor, shared by its callers and its manager thread.

    Kept apart from the executor object so that an executor dropped without
    ``shutdown()`` can be noticed (by a ``weakref.finalize``) and its workers
    stopped, while the manager thread still holds the pool.

    ``manage`` is what the manager thread runs (:func:`.manager.manage`),
    handed in by the executor: the manager needs the pool, not the other way
    round.
    """

    def __init__(
        self,
        max_workers: int,
        max_tasks_per_child: int | None,
        initializer: bytes | None,
        initializer_name: str,
        context: multiprocessing.context.BaseContext | None,
        idle_timeout: float | None,
        start_timeout: float,
        manage: Callable[[Pool], object],
    ) -> None:
        self.manage = manage
        self.max_workers = max_workers
        self.max_tasks_per_child = max_tasks_per_child
        self.initializer = initializer
        self.initializer_name = initializer_name
        self.context = context
        self.idle_timeout = idle_timeout  # None: idle workers stay until shutdown
        self.start_timeout = start_timeout
        # Reentrant: the finalizer of a dropped executor calls begin_shutdown(),
        # and garbage collection may run it in the manager thread at any
        # allocation, lock held or not.
        self.lock = threading.RLock()
        self.workers: list[WorkerProcess] = []  # every worker process not yet waited for
        self.idle: list[WorkerProcess] = []  # most recently used last
        self.pending: deque[Job] = deque()  # may hold dropped jobs, skipped when reached
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
        # warm_up(): the manager starts workers until this many are alive, then sets warmed.
        self.warm_target = 0
        self.warmed = threading.Event()
        self.warmed.set()
        self.retry_at = 0.0
        self.last_start_failure: tuple[str, BaseException | None] | None = None

    # -- the caller's side ---------------------------------------------------------

    def submit(self, call: Call, owner: object, frame: bytes | None = None) -> None:
        """Pickle ``call`` and hand it to an idle worker, or queue it; ``owner`` (the executor) names it in errors.

        ``frame``: the call already pickled and framed (a chunk of ``map()``).
        """
        if importing_main():
            raise RuntimeError(
                "a worker process tried to start worker processes while importing the main module; "
                "protect the main script's entry point with: if __name__ == '__main__':"
            )
        # By name where the name finds a wrapper (@async_wrap(executor=...) on a module-level function).
        if frame is None:
            fn, args, kwargs = function_reference(call.fn), call.args, call.kwargs
            frame = framed(dumps((fn, args, kwargs), lambda: call_pieces(fn, args, kwargs), fn))
        job = Job(call, frame)
        call.handle = job
        start_manager = False
        with self.lock:
            if self.shutdown:
                raise ExecutorShutdownError(f"{owner!r} is shut down; create a new executor to run more calls")
            if self.start_failures >= MAX_START_FAILURES and time.monotonic() < self.retry_at:
                raise self.start_error_locked()
            if self.idle:
                self._start_job_locked(self.idle.pop(), job)
                return
            call.enqueued_at = time.monotonic()
            self.pending.append(job)
            self.queued += 1
            self.reclaim_from_closed_loops_locked()  # a worker whose reply nobody will read
            if self.manager is None:
                self._new_manager_locked()
                start_manager = True
            elif self.alive < self.max_workers and self.starting < self.queued:
                self._wake_locked()
        if start_manager:
            assert self.manager is not None
            self.manager.start()

    def drop(self, call: Call) -> bool:
        """Drop a queued call, or kill the worker running it; False if its reply is being delivered."""
        job: Job = call.handle
        with self.lock:
            if call.state == PENDING:
                call.state = DROPPED  # stays in the deque; skipped when reached
                self.queued -= 1
            elif call.state == RUNNING and job.worker is not None:
                worker = job.worker
                job.worker = worker.job = None
                self.running -= 1
                worker.state = KILLED
                worker.outbuf = None
                worker.process.kill()  # only this child; the manager sees it exit and reaps it
                if worker.owner is not MANAGER:
                    self.set_owner_locked(worker, None)  # the manager reads what is left, at its exit
            else:
                return False  # its reply is being delivered
        call.drop()
        return True

    def warm_up(self, workers: int, owner: object) -> threading.Event:
        """Have at least ``workers`` workers started; the event is set once they are ready (or starts keep failing)."""
        start_manager = False
        with self.lock:
            if self.shutdown:
                raise ExecutorShutdownError(f"{owner!r} is shut down; create a new executor to run more calls")
            if self.alive - self.starting >= workers:
                ready = threading.Event()
                ready.set()
                return ready
            self.warm_target = max(self.warm_target, workers)
            self.warmed.clear()
            if self.manager is None:
                self._new_manager_locked()
                start_manager = True
            else:
                self._wake_locked()
            event = self.warmed
        if start_manager:
            assert self.manager is not None
            self.manager.start()
        return event

    def warm_done_locked(self) -> None:
        """A worker became ready, starts keep failing, or the pool shuts down: wake a warm_up() if it is over."""
        if self.warm_target and (
            self.alive - self.starting >= self.warm_target or self.shutdown or self.start_failures >= MAX_START_FAILURES
        ):
            self.warm_target = 0
            self.warmed.set()

    def begin_shutdown(self, cancel_futures: bool) -> list[Call]:
        """Take no more calls and let the workers exit; with ``cancel_futures``, return the queued calls, dropped."""
        dropped: list[Call] = []
        with self.lock:
            self.shutdown = True
            self.warm_done_locked()
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
                self.close_wake_pipe_locked()
        return dropped

    def unfinished_futures(self) -> list[cf.Future[Any]]:
        """The Futures of ``submit()``ted calls not done yet, queued or running."""
        with self.lock:
            calls = [job.call for job in self.pending]
            calls += [worker.job.call for worker in self.workers if worker.job is not None]
        return [call.future for call in calls if isinstance(call, SubmittedCall) and not call.future.done()]

    def kill_workers(self) -> None:
        """Kill every worker process, whatever it is doing; the manager reaps them and fails their calls."""
        with self.lock:
            for worker in self.workers:
                worker.process.kill()

    def statistics(self) -> ExecutorStatistics:
        """A snapshot of the pool's counters."""
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

    # -- workers and calls, under the lock -----------------------------------------

    def _start_job_locked(self, worker: WorkerProcess, job: Job) -> bool:
        call = job.call
        if isinstance(call, SubmittedCall) and not call.claim():
            call.drop()  # its Future was cancelled while queued
            return False
        call.state = RUNNING
        job.worker = worker
        worker.job = job
        worker.state = BUSY
        self.running += 1
        self.set_owner_locked(worker, self._reader_for_locked(worker, call))
        self.send_locked(worker, job.frame)
        return True

    def job_done_locked(self, worker: WorkerProcess, job: Job) -> None:
        """``worker`` sent the reply to ``job``: count the call and free the worker (it may take a queued call)."""
        worker.job = job.worker = None
        worker.tasks += 1
        self.running -= 1
        self.completed += 1
        self.worker_free_locked(worker, time.monotonic())

    def worker_free_locked(self, worker: WorkerProcess, now: float) -> None:
        """Give a worker that just became free its next call, or stop it, or park it."""
        if worker.state not in (STARTING, BUSY):
            return  # being killed or stopped
        if self.max_tasks_per_child is not None and worker.tasks >= self.max_tasks_per_child:
            self.stop_locked(worker, now)
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
            self.stop_locked(worker, now)
            return
        worker.state = IDLE
        worker.idle_since = now
        self.idle.append(worker)

    def stop_locked(self, worker: WorkerProcess, now: float) -> None:
        """Ask ``worker`` to exit; it is killed if it is still alive ``STOP_GRACE`` seconds after ``now``."""
        worker.state = STOPPING
        worker.deadline = now + STOP_GRACE
        self.send_locked(worker, STOP_FRAME)
        if threading.get_ident() != self.manager_ident:  # a loop recycled it: the manager keeps the deadline
            self._wake_locked()

    def send_locked(self, worker: WorkerProcess, frame: bytes) -> None:
        """Write ``frame`` to ``worker`` without blocking; what the pipe has no room for, the manager writes later."""
        # Under the lock, so the manager cannot close (and the OS reuse) the fd
        # meanwhile. The manager writes the rest as the worker reads.
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

    # -- who reads a reply pipe (see the module docstring) -------------------------

    def _reader_for_locked(self, worker: WorkerProcess, call: Call) -> object:
        """The inbox of the loop running in this thread if it awaits ``call`` and can read its reply, else MANAGER."""
        inbox: Inbox | None = call.inbox
        if inbox is None or not inbox.reads_fds or worker.process.sentinel is None or worker.owner is MANAGER:
            # trio, submit(), no pidfd (the reply pipe's EOF is then the exit signal), or the
            # manager reads this pipe: only the manager takes a pipe from itself (its reads
            # are not under the lock), when the call ends.
            return MANAGER
        if (worker.loop is None or worker.loop is inbox) and inbox.is_current():
            return inbox
        return MANAGER

    def set_owner_locked(self, worker: WorkerProcess, owner: object) -> None:
        """Make ``owner`` (MANAGER, None, or the inbox of the loop running in this thread) the reply pipe's reader."""
        if owner is not MANAGER and owner is not None and worker.loop is None:
            inbox = cast(Inbox, owner)
            if inbox.add_reader(worker.reply_fd, self._on_loop_readable, worker, inbox):
                worker.loop = inbox
            else:  # a loop without add_reader
                owner = MANAGER
        worker.owner = owner
        if owner is MANAGER and not worker.watched and threading.get_ident() != self.manager_ident:
            self._wake_locked()  # to register the pipe with its selector
        # A manager's registration goes when it next looks (a reply, or its next round).
        if worker.loop is not None and worker.loop is not owner:
            self.unwatch_loop_locked(worker)

    def reclaim_from_closed_loops_locked(self) -> None:
        """Take over the reply pipes of calls awaited on loops closed since: nobody will read them.

        Checked when a call has to queue and in each round of the manager
        (at least every ``manager.LOOP_CHECK_INTERVAL`` while a loop reads a reply).
        """
        for worker in self.workers:
            owner = worker.owner
            if owner is not MANAGER and owner is not None and cast(Inbox, owner).is_closed():
                self.set_owner_locked(worker, MANAGER)

    def unwatch_loop_locked(self, worker: WorkerProcess) -> None:
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

    def _loop_unwatch(self, worker: WorkerProcess, loop: Inbox) -> None:
        with self.lock:
            if worker.loop is loop and worker.owner is not loop:
                self._remove_reader_locked(worker, loop)

    def _remove_reader_locked(self, worker: WorkerProcess, loop: Inbox) -> None:
        loop.remove_reader(worker.reply_fd)
        worker.loop = None
        self._close_reply_if_dead_locked(worker)

    def _close_reply_if_dead_locked(self, worker: WorkerProcess) -> None:
        if worker.reply_closing:
            worker.reply_closing = False
            with contextlib.suppress(OSError):
                os.close(worker.reply_fd)

    def _on_loop_readable(self, worker: WorkerProcess, loop: Inbox) -> None:
        """On ``loop``: the reply pipe of a worker running a call awaited here has data (or EOF)."""
        job: Job | None = None
        with self.lock:
            if worker.owner is not loop:  # taken over (by the manager) since
                if worker.loop is loop:
                    self._remove_reader_locked(worker, loop)
                return
            frames, eof = worker.replies.read(worker.reply_fd)
            if frames:  # the reply to its call: the one frame a worker sends while running one
                job = worker.job
                if job is not None:
                    self.job_done_locked(worker, job)  # may give it this loop's next call
                if worker.job is None:
                    self.set_owner_locked(worker, None)
            if eof:  # it died or closed its pipe: the manager reports the exit
                self.set_owner_locked(worker, MANAGER)
        if job is not None:
            call = job.call
            kind = set_outcome(call, worker.pid, frames[0])
            if kind != RESULT:
                with self.lock:
                    self.failed += 1
            call.finish_here()  # we are on the loop that awaits it: wake it now

    # -- the manager thread's handle -----------------------------------------------

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
        self.manager = threading.Thread(
            target=self.manage, args=(self,), name="asyncbridge-process-manager", daemon=True
        )

    def close_wake_pipe_locked(self) -> None:
        """Close the pipe that wakes the manager thread (it is gone, or never started)."""
        if self.wake_r >= 0:
            os.close(self.wake_r)
            os.close(self.wake_w)
            self.wake_r = self.wake_w = -1

    # -- starts that keep failing, and failing calls -------------------------------

    def start_failed(self, reason: tuple[str, BaseException | None]) -> list[tuple[Call, BaseException]]:
        """Count a failed start; after too many in a row, take every queued call to fail it."""
        failed: list[tuple[Call, BaseException]] = []
        with self.lock:
            self.start_failures += 1
            self.last_start_failure = reason
            if self.start_failures >= MAX_START_FAILURES:
                self.retry_at = time.monotonic() + START_RETRY_DELAY
                failed = [(job.call, self.start_error_locked()) for job in self.take_queued_locked()]
                self.warm_done_locked()
        return failed

    def start_error_locked(self) -> WorkerStartError:
        """The error for calls made while starts keep failing."""
        reason, cause = self.last_start_failure or ("unknown", None)
        error = WorkerStartError(
            f"worker processes failed to start {self.start_failures} times in a row; the last one: "
            f"{reason}. Calls fail at once until a start succeeds (the next attempt is made for a "
            f"call submitted {START_RETRY_DELAY:g} s after the last failure)"
        )
        error.__cause__ = cause
        return error

    def take_queued_locked(self) -> list[Job]:
        """Empty the queue; return its live jobs, claimed (to be failed, not run)."""
        jobs: list[Job] = []
        while self.pending:
            job = self.pending.popleft()
            if job.call.state == PENDING:
                job.call.state = RUNNING
                jobs.append(job)
        self.queued = 0
        return jobs

    def fail_calls(self, failed: Sequence[tuple[Call, BaseException]]) -> None:
        """Fail each call with its error (outside the lock), unless its Future was cancelled meanwhile."""
        for call, error in failed:
            if isinstance(call, SubmittedCall) and not call.claim():
                call.drop()  # its Future was cancelled meanwhile
                continue
            call.fail(error)
