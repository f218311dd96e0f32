"""The manager thread of a process pool: it starts workers, feeds them, reads their replies, reaps them.

One thread per pool, started on demand by the first call that has to queue and
gone when no worker is left. It waits, with a selector, on its wake-up pipe,
on every worker's reply pipe it reads (see "who reads a reply pipe" in
:mod:`.pool`), on each worker's pidfd, and on request pipes that were full.
Each round it stops idle workers past their timeout, kills those that would
not stop, kills starting workers past ``start_timeout`` (a failed start) or,
once shut down, not needed by a queued call, starts workers for queued calls
(within the bound, and held back after failed starts; none after a failed
start once shut down), then handles what the selector reports. It changes the
pool only under ``pool.lock``; it reads the reply pipes it owns without the
lock, as only it can take a pipe from itself.
"""

from __future__ import annotations

import os
import pickle
import selectors
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from .._backends import Inbox
from .._call import PENDING, Call, logger
from .._exceptions import ExecutorShutdownError, WorkerCrashedError
from .framing import PROTOCOL, READY, RESULT, START_FAILED, framed
from .launch import exit_description, start_worker
from .pickling import describe_function, main_reference, set_outcome, with_remote_traceback
from .pool import MAX_START_FAILURES, STOP_GRACE, Pool
from .records import DEAD, IDLE, KILLED, MANAGER, STARTING, STOPPING, SubmittedCall, WorkerProcess

__all__ = ["Manager", "manage", "reset_after_fork"]

LOOP_CHECK_INTERVAL = 1.0  # seconds between the manager's checks that a loop reading a reply still runs


def manage(pool: Pool) -> None:
    """The manager thread of ``pool`` (the target of the thread the pool starts)."""
    Manager(pool).run()


class Manager:
    """The manager thread's own state: the pool it manages and its selector."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.selector = selectors.DefaultSelector()

    def run(self) -> None:
        """Manage the pool until no worker is left."""
        pool = self.pool
        with pool.lock:
            pool.manager_ident = threading.get_ident()
            self.selector.register(pool.wake_r, selectors.EVENT_READ, None)
        try:
            while self._manage_once():
                pass
        except BaseException:  # a bug here must not leave callers waiting forever
            logger.exception("the process manager thread failed; killing its worker processes")
            self._fail_everything()
            raise
        finally:
            self.selector.close()

    def _manage_once(self) -> bool:
        """One round: start, stop and feed workers, then wait for an event. False: exit."""
        pool, selector = self.pool, self.selector
        now = time.monotonic()
        timeout: float | None = None
        to_register: list[WorkerProcess] = []
        stranded: Sequence[tuple[Call, BaseException]] = ()
        failed_starts: list[tuple[Call, BaseException]] = []
        with pool.lock:
            pool.wake_pending = False
            # Stop idle workers that are no longer wanted, oldest first.
            idle = pool.idle
            idle_timeout = pool.idle_timeout
            while idle and (pool.shutdown or (idle_timeout is not None and idle[0].idle_since + idle_timeout <= now)):
                pool.stop_locked(idle.pop(0), now)
            if idle and idle_timeout is not None:
                timeout = idle[0].idle_since + idle_timeout - now
            # Once shut down, a start is for a queued call (not cancelled) or not at all.
            queued = self._calls_needing_a_worker_locked() if pool.shutdown else pool.queued
            unwanted = pool.starting - queued if pool.shutdown else 0
            for worker in pool.workers:
                if worker.state == STARTING:
                    if unwanted > 0:  # shut down, and no queued call needs it
                        unwanted -= 1
                        self._kill_starting_locked(worker)
                    elif worker.deadline <= now:
                        self._kill_starting_locked(worker)
                        # The initializer's error if it sent one (and then did not exit), else the timeout.
                        reason = worker.start_failure or self._start_timed_out(worker)
                        failed_starts += pool.start_failed(reason)
                    else:
                        left = worker.deadline - now
                        timeout = left if timeout is None else min(timeout, left)
                elif worker.state == STOPPING:
                    if worker.deadline <= now:
                        worker.state = KILLED
                        worker.process.kill()
                    else:
                        left = worker.deadline - now
                        timeout = left if timeout is None else min(timeout, left)
                if worker.outbuf is not None and not worker.writing:
                    to_register.append(worker)
                owner = worker.owner
                if owner is not MANAGER and owner is not None:  # a loop reads its reply
                    if pool.shutdown:  # the loop may be the one blocked in shutdown(wait=True)
                        pool.set_owner_locked(worker, MANAGER)
                    else:
                        timeout = LOOP_CHECK_INTERVAL if timeout is None else min(timeout, LOOP_CHECK_INTERVAL)
            pool.reclaim_from_closed_loops_locked()
            for worker in pool.workers:
                if (worker.owner is MANAGER) != worker.watched:
                    worker.watched = not worker.watched
                    if worker.watched:
                        selector.register(worker.reply_fd, selectors.EVENT_READ, worker)
                    else:
                        selector.unregister(worker.reply_fd)
            # Start workers for queued calls, within the bound.
            if not pool.shutdown:
                queued = pool.queued  # a failed start may have failed the queued calls just now
            launches = min(max(queued - pool.starting, pool.warm_target - pool.alive), pool.max_workers - pool.alive)
            if pool.start_failures >= MAX_START_FAILURES:  # one attempt at a time, not before retry_at
                launches = min(launches, 1) if not pool.starting and now >= pool.retry_at else 0
            if pool.shutdown and pool.start_failures:  # no new tries once shut down: fail what is queued
                launches = 0
            launches = max(launches, 0)
            pool.alive += launches
            pool.starting += launches
            exiting = not pool.alive
            if exiting:
                # Calls can be queued here only while starts are held back
                # after failures (a call re-queued from a worker that died):
                # fail them as the calls queued at the last failure were.
                stranded = [(job.call, pool.start_error_locked()) for job in pool.take_queued_locked()]
                pool.pending.clear()  # only dropped jobs were left in it
                pool.manager = None
                pool.manager_ident = None
                if pool.shutdown:
                    pool.close_wake_pipe_locked()
                pool.all_exited.set()
        pool.fail_calls(failed_starts)
        if exiting:
            pool.fail_calls(stranded)
            return False
        for worker in to_register:
            worker.writing = True
            selector.register(worker.request_fd, selectors.EVENT_WRITE, worker)
        launched = [self._launch() for _ in range(launches)]
        if not all(launched):
            return True  # a failed launch changed the plan (retry, or give up): no event will say so
        if launched:  # wake up by its start_timeout
            timeout = pool.start_timeout if timeout is None else min(timeout, pool.start_timeout)
        for key, _events in selector.select(timeout):
            worker = key.data
            if worker is None:
                try:
                    while os.read(pool.wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
            elif worker.state == DEAD:
                continue  # reported earlier in this round
            elif key.fd == worker.request_fd:
                self._write_more(worker)
            else:
                if key.fd == worker.reply_fd:
                    if worker.owner is not MANAGER:  # a loop reads it now, or nobody
                        with pool.lock:  # so that a caller making it ours again sees it unwatched
                            if worker.owner is not MANAGER:
                                worker.watched = False
                                selector.unregister(worker.reply_fd)
                                continue
                    frames, eof = worker.replies.read(worker.reply_fd)  # ours: only this thread takes it from us
                    for frame in frames:
                        self._on_frame(worker, frame)
                else:  # the pidfd: the process has exited
                    eof = True
                if eof:
                    self._on_exit(worker)
        return True

    def _calls_needing_a_worker_locked(self) -> int:
        """How many queued calls still want a worker: not dropped, their Futures not cancelled."""
        return sum(
            1
            for job in self.pool.pending
            if job.call.state == PENDING and not (isinstance(job.call, SubmittedCall) and job.call.future.cancelled())
        )

    def _kill_starting_locked(self, worker: WorkerProcess) -> None:
        """Kill a worker that is not ready yet; its exit is then no failed start (the caller counts one if need be)."""
        worker.state = KILLED
        self.pool.starting -= 1
        worker.process.kill()

    def _start_timed_out(self, worker: WorkerProcess) -> tuple[str, BaseException | None]:
        pool = self.pool
        culprit = (
            f"was the initializer {pool.initializer_name} still running?"
            if pool.initializer is not None
            else "a slow import, or an overloaded machine?"
        )
        return (
            f"worker process {worker.pid} was not ready within start_timeout={pool.start_timeout:g} s "
            f"and was killed ({culprit})",
            None,
        )

    def _launch(self) -> bool:
        """Start a worker process; False if that failed (counted as a failed start)."""
        pool, selector = self.pool, self.selector
        try:
            process, request_fd, reply_fd, alive_fd = start_worker(pool.context)
        except BaseException as exc:
            with pool.lock:  # give back the place it held
                pool.alive -= 1
                pool.starting -= 1
            reason = f"starting a worker process failed: {type(exc).__name__}: {exc}"
            pool.fail_calls(pool.start_failed((reason, exc)))
            if not isinstance(exc, Exception):
                raise
            return False
        worker = WorkerProcess(process, request_fd, reply_fd, alive_fd)
        worker.deadline = time.monotonic() + pool.start_timeout  # killed if it is not ready by then
        selector.register(reply_fd, selectors.EVENT_READ, worker)
        worker.watched = True
        if process.sentinel is not None:
            selector.register(process.sentinel, selectors.EVENT_READ, worker)
        init = pickle.dumps((sys.path, main_reference(), pool.initializer), PROTOCOL)
        with pool.lock:
            pool.workers.append(worker)
            pool.send_locked(worker, framed(init))
        return True

    def _write_more(self, worker: WorkerProcess) -> None:
        """Write more of the frame the worker's request pipe had no room for."""
        pool = self.pool
        with pool.lock:
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
                self.selector.unregister(worker.request_fd)

    def _on_frame(self, worker: WorkerProcess, frame: bytearray) -> None:
        """A frame from ``worker``'s reply pipe: it is ready, it failed to start, or a call's reply."""
        pool = self.pool
        message: tuple[Any, ...] = ()
        unpickling_error: Exception | None = None
        try:
            message = pickle.loads(frame)
        except Exception as exc:  # e.g. the result's class cannot be imported here
            unpickling_error = exc
        kind: int = message[0] if message else -1
        if kind == READY:
            with pool.lock:
                if worker.state == STARTING:
                    pool.starting -= 1
                    pool.start_failures = 0
                    pool.worker_free_locked(worker, time.monotonic())
                    pool.warm_done_locked()
            return
        if kind == START_FAILED:
            _, remote_exc, text, description = message
            reason = f"the initializer {pool.initializer_name} raised {description}"
            worker.start_failure = (reason, with_remote_traceback(remote_exc, text, description))
            return
        with pool.lock:
            job = worker.job
            if job is not None:
                if kind != RESULT:
                    pool.failed += 1
                pool.job_done_locked(worker, job)
                inbox: Inbox | None = job.call.inbox
                if worker.state == IDLE and inbox is not None and inbox.reads_fds:
                    worker.owner = None  # the next such call may read its reply on its loop
        if job is None:
            return  # its caller was cancelled just now
        call = job.call
        set_outcome(call, worker.pid, frame, message, unpickling_error)
        call.finish()

    def _on_exit(self, worker: WorkerProcess) -> None:
        """The worker process has exited (or closed its reply pipe): report it and clean up."""
        pool = self.pool
        watched = worker.reply_fd if worker.watched else None
        worker.watched = False
        for fd in (watched, worker.process.sentinel, worker.request_fd if worker.writing else None):
            if fd is not None:
                self.selector.unregister(fd)
        exitcode = worker.process.wait(STOP_GRACE)
        if exitcode is None:  # it closed its pipe yet lives on: make sure
            worker.process.kill()
            exitcode = worker.process.wait(None)
        # A reply written just before the end (read from the pipe,
        # which keeps it) still counts, whoever was to read it.
        if worker.owner is not MANAGER:
            with pool.lock:  # a loop reads (under the lock) only while it owns the pipe
                pool.set_owner_locked(worker, MANAGER)
        while True:
            frames, eof = worker.replies.read(worker.reply_fd)
            for frame in frames:
                self._on_frame(worker, frame)
            if eof or not frames:
                break
        with pool.lock:
            state = worker.state
            worker.state = DEAD
            pool.workers.remove(worker)
            pool.alive -= 1
            if state == IDLE:
                pool.idle.remove(worker)
            job = worker.job
            if job is not None:
                worker.job = job.worker = None
                pool.running -= 1
                if worker.unreached:  # it died before the call could reach it: run it elsewhere
                    job.call.state = PENDING
                    pool.pending.appendleft(job)
                    pool.queued += 1
                    job = None
                else:
                    pool.completed += 1
                    pool.failed += 1
            if state == STARTING:
                pool.starting -= 1
            worker.close_fds()
        if job is not None:
            call = job.call
            call.exc = WorkerCrashedError(
                f"worker process {worker.pid} died while running {describe_function(call.fn)}: "
                f"{exit_description(exitcode)}",
                pid=worker.pid,
                exitcode=exitcode,
            )
            call.finish()
        if state == STARTING:
            reason = worker.start_failure or (
                f"worker process {worker.pid} {exit_description(exitcode)} before it was ready "
                "(its stderr may tell why)",
                None,
            )
            pool.fail_calls(pool.start_failed(reason))

    def _fail_everything(self) -> None:
        """After a bug in this thread: kill every worker, fail every call, shut the pool down."""
        pool = self.pool
        calls: list[Call] = []
        with pool.lock:
            pool.shutdown = True
            workers, pool.workers, pool.idle = pool.workers, [], []
            for worker in workers:
                worker.state = DEAD
                worker.process.kill()
                if worker.job is not None:
                    calls.append(worker.job.call)
                    worker.job = None
            while pool.pending:
                call = pool.pending.popleft().call
                if call.state == PENDING:
                    calls.append(call)
            pool.alive = pool.starting = pool.queued = pool.running = 0
        for worker in workers:
            worker.process.wait(None)
            with pool.lock:
                worker.close_fds()
                if worker.loop is not None:
                    pool.unwatch_loop_locked(worker)
        error = ExecutorShutdownError("the executor failed (see the log) and shut down")
        pool.fail_calls([(call, error) for call in calls])
        with pool.lock:
            pool.manager = None
            pool.manager_ident = None
            pool.close_wake_pipe_locked()
            pool.all_exited.set()


def reset_after_fork(pool: Pool) -> None:
    """In a child made by ``os.fork()``: forget the parent's workers, keep the settings.

    Without this the child would write calls to its parent's workers (and
    read their replies in a muddle), and hold their pipes open. The child
    starts workers of its own when it next makes a call. This also runs in
    a worker started with ``mp_context`` "fork" (where :mod:`.launch` closes
    the parent's ends of the worker's own pipes).
    """
    pool.lock = threading.RLock()
    for worker in pool.workers:
        worker.forget()
    pool.workers, pool.idle, pool.pending = [], [], deque()
    pool.alive = pool.starting = pool.queued = pool.running = 0
    pool.manager, pool.manager_ident = None, None
    pool.all_exited = threading.Event()
    pool.all_exited.set()
    pool.close_wake_pipe_locked()
    pool.wake_pending = False
