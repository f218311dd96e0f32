"""A detector session: one activation on one event loop, the heartbeat on the loop and the watchdog thread.

The session measures each block and builds its :class:`BlockingEvent`; the
backend-specific parts (the heartbeat, stopping without blocking the loop,
naming the running task) are the helpers below, one per backend.

How it works, and why the loop hardly pays for it:

- **Heartbeat, on the loop.** Every ``interval`` (a quarter of the threshold)
  the loop stores the time in one attribute. On asyncio and uvloop that is a
  self-rescheduling ``call_later`` callback (no task, no coroutine); on trio a
  system task that sleeps in a loop. That store is all the loop ever does.
  When a beat comes later than the threshold after the one before, the
  heartbeat also notes that gap, ``(last beat, this beat)``: the block's exact
  bounds, whenever the watchdog gets to read them.
- **Watchdog, in a thread of its own.** It sleeps until the heartbeat would be
  overdue by the threshold, so it wakes about once per threshold. If the beat
  is late, the loop thread is blocked *now*: it samples that thread's stack
  (``sys._current_frames()``, that one thread only) and its running task,
  once. Then it polls every interval until the heartbeat's gap for this block
  appears, and records exactly one event for it. A block in a C call that
  holds the GIL is sampled as soon as the call returns (the loop thread gives
  the GIL to the waiting watchdog before it can get back to the heartbeat),
  on the line that made the call.
- **Gaps the watchdog never saw in progress are not reported** (logged at
  DEBUG): too short to be sampled (under the threshold plus about an
  interval), or the loop thread waiting for the GIL that another thread held
  (see below) and getting it before the watchdog did.
- **An idle loop is not blocked.** If the sample shows the loop thread waiting
  for I/O, the beat is late because the operating system did not run the
  process. That is not reported; the watchdog looks again until the beat
  comes. Idle means: on asyncio, the innermost frame is the selector's
  ``select``; on uvloop (a loop in C) it is the frame that started the loop;
  on trio, the run's ``unrolled_run`` frame is not on the stack at all (trio's
  own I/O wait, or the host loop's wait when trio runs as a guest, as anyio's
  pytest plugin runs it).
- **Waiting for the GIL** (Linux). The watchdog holds the GIL while it
  samples, and reads ``/proc`` without letting go of it (``_thread_clock.py``),
  so what it reads of the loop thread stays true while it looks. A loop thread
  asleep on a futex there waits for a lock: the GIL, when its wait for I/O is
  over (or, in ``Condition.wait``, once notified: trio's guest host loop, a
  queue) or when it was stopped mid-code; at the end of the block, if it
  hardly ran while other threads were busy, the event names those threads
  (``_record_block``). Otherwise a late beat at the wait for I/O is idleness
  after all, and one elsewhere is a block of the loop's own.
- **Duration.** The block began somewhere within the interval after the last
  beat and ended just before the first beat after it, so the measured duration
  is right to about half an interval either way (plus how late the operating
  system wakes the loop). A loop that is merely busy running many short
  callbacks is late too, by the length of one iteration; that is what a
  threshold well above an iteration's length is for.
- **Reporting happens in the watchdog thread,** never on the loop: recording
  the event, logging it, calling ``on_block``. ``__aexit__`` waits for the
  watchdog (without blocking the loop) so that ``events`` is complete after it.

:class:`~asyncbridge.BlockingDetector` (``_detector.py``) checks its arguments
and starts and stops one session per ``async with``. Strict mode, the patching
of known blocking calls, lives in ``_strict.py``; the session registers it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Literal

from . import _strict
from ._detector_event import BlockingEvent, frame_summaries
from ._strict_rules import AllowRule
from ._thread_clock import Reading, ThreadClock, holds_gil

if TYPE_CHECKING:
    pass

__all__ = ["DetectorSession", "DetectorSettings", "entry_frame"]

logger = logging.getLogger("asyncbridge.blocking")

MAX_FRAMES = 256  # a sampled stack is cut at its outer end beyond this; deep ASGI stacks are ~80

_monotonic = time.monotonic
_EMPTY_STACK = traceback.StackSummary()


@dataclass(frozen=True)
class DetectorSettings:
    """A detector's checked arguments, as each of its sessions uses them."""

    threshold: float
    interval: float  # between heartbeats
    strict: Literal[False, "report", "raise"]
    strict_rules: int
    allow: tuple[AllowRule, ...]


# Another thread of the process: its name, clock, ns on a CPU or waiting for one by the watchdog's last reading
# before the block (0 for a thread not read then: idle since it started), and its stack when the block was sampled.
OtherThread = tuple[str, ThreadClock, int, traceback.StackSummary]


class _Pending:
    """A late beat seen in progress: the beat it follows, and what the loop thread was doing."""

    __slots__ = (
        "await_chain",
        "beat",
        "cpu_base",
        "gil",
        "idle",
        "io_wait_over",
        "looked",
        "others",
        "stack",
        "task_name",
    )

    def __init__(
        self,
        beat: float,
        stack: traceback.StackSummary = _EMPTY_STACK,
        task_name: str | None = None,
        idle: bool = False,
    ) -> None:
        self.beat = beat
        self.stack = stack
        self.task_name = task_name
        self.idle = idle  # the loop thread was waiting for I/O: late, but not blocked by its own code
        self.await_chain: tuple[traceback.FrameSummary, ...] = ()
        self.io_wait_over = False  # seen in its wait for I/O, that wait over: a GIL wait, or else nothing
        self.cpu_base: Reading | None = None  # the loop thread's CPU clocks before the block
        self.gil = False  # the loop thread was asleep on a lock, or on a CPU, when sampled: maybe the GIL
        self.others: list[OtherThread] = []  # the other threads when the block was sampled
        self.looked: Reading | None = None  # the loop thread's clocks when it was seen waiting for the GIL


def _busy(threads: list[OtherThread], least: float) -> tuple[tuple[str, traceback.StackSummary], ...]:
    """Those of ``threads`` busy more than ``least`` seconds since their ``busy`` reading.

    Busy: on a CPU, or ready to run and waiting for one. A thread holding the
    GIL on a loaded machine may spend most of its turn waiting for a CPU: it
    still holds the GIL all along.
    """
    found: list[tuple[str, traceback.StackSummary]] = []
    for name, clock, before, stack in threads:
        reading = clock.read()
        if reading is not None and (reading[1] + reading[2] - before) / 1e9 >= least:
            found.append((name, stack))
    return tuple(found)


def _notified(frame: FrameType) -> bool | None:
    """For a thread asleep in ``threading.Condition.wait``: whether it was notified; None for any other frame.

    Its waiter lock is released by the notice: a thread still asleep then
    waits for the GIL to return from ``acquire``.
    """
    code = frame.f_code
    if code.co_name != "wait" or not code.co_filename.endswith("threading.py"):
        return None
    try:
        waiter = frame.f_locals.get("waiter")  # the thread is asleep in C: its locals stay put
        locked: Callable[[], bool] | None = getattr(waiter, "locked", None)
        return None if locked is None else not locked()
    except Exception:  # not the Condition we know
        return None


_IDLE_FRAMES = (
    ("selectors.py", "select"),  # the selector event loops
    ("windows_events.py", "_poll"),  # the proactor event loop
)
_COROUTINE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR


def entry_frame(frame: FrameType | None) -> FrameType | None:
    """The first frame outside the coroutines running ``frame``: for uvloop, the loop's caller."""
    while frame is not None and frame.f_code.co_flags & _COROUTINE_FLAGS:
        frame = frame.f_back
    return frame


class DetectorSession:
    """One activation of a detector on one event loop: the heartbeat's clock and the watchdog.

    ``record`` receives each event, in the watchdog thread; ``task_namer`` names
    the task running in a sampled stack, from the watchdog thread too.
    """

    def __init__(
        self,
        settings: DetectorSettings,
        record: Callable[[BlockingEvent], None],
        task_namer: Callable[[list[FrameType]], str | None],
    ) -> None:
        self.threshold = settings.threshold
        self.interval = settings.interval
        self.trigger = self.threshold + self.interval / 2
        self.record = record
        self.thread_id = threading.get_ident()
        self.thread_name = threading.current_thread().name
        self.native_id = threading.get_native_id()
        self._clock: ThreadClock | None = None  # made by the watchdog (it reads /proc)
        self._cpu_base: Reading | None = None  # the loop thread's CPU clocks at the watchdog's last look
        self._thread_clocks: dict[int, ThreadClock] = {}  # the other threads', by native id, files kept open
        self._thread_base: dict[int, int] = {}  # their busy ns (see OtherThread), right to a millisecond of CPU
        self._others_ran = 0.0  # the CPU seconds they used since they were last read
        self.task_namer = task_namer
        # The coroutine frames of the tasks awaiting the one running in a sampled stack, outermost first
        # (see BlockingEvent.await_chain), read from the watchdog thread; set per backend.
        self.awaiters: Callable[[list[FrameType]], list[FrameType]] = lambda frames: []
        # The first frame outside the coroutines that entered the detector. On asyncio
        # with uvloop (a loop in C), idle, the loop thread's innermost Python frame is
        # this one; on trio it is unrolled_run, and idle means it is not on the stack.
        self.entry_frame: FrameType | None = None
        self.trio = False
        self.loop: asyncio.AbstractEventLoop | None = None  # None on trio
        self.beat = _monotonic()  # written by the heartbeat, on the loop thread, and nowhere else
        self.gaps: deque[tuple[float, float]] = deque()  # (beat, next beat) further apart than trigger
        self.calls: deque[BlockingEvent] = deque()  # strict-mode events, appended on the loop thread
        self.stop_heartbeat: Callable[[], object] = lambda: None
        self.strict: _strict.StrictState | None = None
        self.stop_at: float | None = None
        self.exited = False
        self.on_exit: Callable[[], None] | None = None
        self.checkpoints: deque[Callable[[], None]] = deque()  # called once the gaps before them are recorded
        self._wake = threading.Event()
        self._go = threading.Event()  # set once the loop side has started: nothing before is judged
        self._thread = threading.Thread(target=self._run, name="asyncbridge-watchdog", daemon=True)

    def tick(self) -> None:
        """Beat: called by the heartbeat, on the loop thread, every interval."""
        now = _monotonic()
        last = self.beat
        if now - last >= self.trigger:
            self.gaps.append((last, now))  # before the beat moves on: the watchdog relies on that order
        self.beat = now

    def start(self, strict: _strict.StrictState | None) -> None:
        # Thread.start() waits for the thread to run, which a loaded machine can make
        # longer than the threshold: the beat restarts after it, so we never report ourselves.
        self._thread.start()
        if strict is not None:
            self.strict = strict
            _strict.register(self.thread_id, strict)
        self.beat = _monotonic()
        self._go.set()

    def stop(self) -> None:
        """Stop the heartbeat and tell the watchdog to finish. Call on the loop thread."""
        end = _monotonic()
        self.stop_heartbeat()
        if self.strict is not None:
            _strict.unregister(self.thread_id, self.strict)
        self.stop_at = end
        self._wake.set()

    def join(self) -> None:
        self._thread.join()

    def checkpoint(self, done: Callable[[], None]) -> None:
        """Have ``done`` called, in the watchdog thread, once every block that ended by now is recorded.

        Call on the loop thread: being here means any block is over, so the
        beat is taken now rather than at the heartbeat's next turn (which
        could come after the caller's next step), and the watchdog is woken.
        """
        self.tick()
        self.checkpoints.append(done)
        self._wake.set()

    # -- the watchdog thread ------------------------------------------------------

    def _run(self) -> None:
        try:
            self._go.wait()
            self._watch()
        except BaseException:  # a bug here must be seen, and must not hang __aexit__
            logger.exception("asyncbridge: the blocking detector's watchdog failed")
        finally:
            if self._clock is not None:
                self._clock.close()
            for clock in self._thread_clocks.values():
                clock.close()
            self._thread_clocks.clear()
            self.exited = True
            on_exit = self.on_exit
            if on_exit is not None:
                on_exit()

    def _watch(self) -> None:
        self._clock = clock = ThreadClock(self.native_id)
        self._take_base(clock, others=True)
        trigger, interval, wait, gaps = self.trigger, self.interval, self._wake.wait, self.gaps
        pending: _Pending | None = None
        checkpoints, woken = self.checkpoints, self._wake
        while self.stop_at is None:
            woken.clear()  # a checkpoint's wake-up (a stop is seen by the loop condition)
            answered = len(checkpoints)  # each appended after its gap: those gaps are drained below
            if self.calls:
                self._drain_calls()
            beat = self.beat  # read before the gaps: a gap is noted before the beat that ends it
            while gaps:
                pending = self._record_gap(pending, *gaps.popleft())
            for _ in range(answered):
                checkpoints.popleft()()
            if pending is not None and pending.beat != beat:
                # The beat moved on and no gap ended it (drained above): the heartbeat took the time just
                # before the watchdog looked, and stored it after (its thread was preempted in between).
                logger.debug("asyncbridge: a late beat turned out on time")
                pending = None
                continue
            if pending is not None:
                if pending.idle and pending.beat == beat:
                    base = pending.cpu_base
                    pending = self._sample(beat)  # late but idle so far: is it blocked now?
                    pending.cpu_base = base
                elif pending.io_wait_over and pending.beat == beat == self.beat:
                    # Seen waiting for the GIL at its wait for I/O: once it has the GIL, the loop may run code
                    # of its own that blocks on. If so, that is the block (and its stack).
                    again = self._sample(beat)
                    if again.stack and not again.io_wait_over:
                        again.cpu_base = pending.cpu_base
                        pending = again
                    elif pending.gil:
                        self._look_again(pending)
                elif pending.gil and pending.beat == beat == self.beat:
                    self._look_again(pending)
                wait(interval)  # poll until the heartbeat notes the gap
                continue
            delay = beat + trigger - _monotonic()
            if delay > 0:
                self._take_base(clock)  # the loop is on time: the clocks before any next block
                wait(delay)  # sleep until the heartbeat would be overdue
            else:
                pending = self._sample(beat)
        self._finish_watch(pending)

    def _finish_watch(self, pending: _Pending | None) -> None:
        # Stopping: the loop thread is running the stop, so any block is over by now.
        trigger, gaps, checkpoints = self.trigger, self.gaps, self.checkpoints
        self._drain_calls()
        end, beat = self.stop_at, self.beat
        assert end is not None  # set before the watchdog is told to finish
        while gaps:
            pending = self._record_gap(pending, *gaps.popleft())
        if pending is not None:
            self._record_gap(pending, pending.beat, end)  # it lasted until the stop
        elif end - beat >= trigger:  # a gap that ended just before the stop, unseen
            self._record_gap(None, beat, end)
        while checkpoints:
            checkpoints.popleft()()
        self.entry_frame = None

    def _record_gap(self, pending: _Pending | None, start: float, end: float) -> _Pending | None:
        """Record the gap from ``start`` to ``end`` if it was seen blocked; return what is still pending."""
        if pending is not None and pending.beat == start:
            if pending.stack:
                self._record_block(pending, end)
            elif not pending.idle:
                logger.debug("asyncbridge: a %.3f s gap ended while it was being sampled", end - start)
            return None
        logger.debug("asyncbridge: a %.3f s gap between heartbeats was not seen in progress", end - start)
        return pending

    def _sample(self, beat: float) -> _Pending:
        pending = self._sample_stack(beat)
        pending.cpu_base = self._cpu_base
        return pending

    def _take_base(self, clock: ThreadClock, *, others: bool = False) -> None:
        """Read the clocks before any next block: the loop thread's, and the other threads' if they ran meanwhile.

        The other threads' once they used a millisecond of CPU since they were
        last read (or when ``others``): they may hold the GIL during a next
        block, and how busy each was over all of it tells which did. So each
        reading kept is right to a millisecond, and a thread not read yet
        counts from zero; an idle process costs nothing.
        """
        before = self._cpu_base
        self._cpu_base = now = clock.read()
        if not holds_gil or now is None:
            return
        if before is not None and not others:
            self._others_ran += (now[3] - before[3]) - (now[1] - before[1]) / 1e9
            if self._others_ran < 0.001:
                return
        self._others_ran = 0.0
        clocks, base, me = self._thread_clocks, dict[int, int](), threading.get_ident()
        for thread in threading.enumerate():
            native_id = thread.native_id
            if thread.ident in (me, self.thread_id) or native_id is None:
                continue
            other = clocks.get(native_id)
            if other is None:
                other = clocks[native_id] = ThreadClock(native_id)
            reading = other.read()
            if reading is not None:
                base[native_id] = reading[1] + reading[2]
        for native_id in [n for n in clocks if n not in base]:  # threads that ended: their files close
            clocks.pop(native_id).close()
        self._thread_base = base

    def _asleep_so_far(self, clock: ThreadClock) -> bool:
        """Whether the loop thread has mostly not run since the watchdog's last look: only then may it wait for the GIL.

        Without libc reads that keep the GIL, waiting for a CPU counts as
        running: a starved thread may hold the GIL while it waits for a CPU,
        and each read lets go of the GIL, which would take as long to get back.
        """
        before, now = self._cpu_base, clock.read()
        if before is None or now is None or now[0] <= before[0]:
            return False
        busy = now[1] - before[1] + (0 if holds_gil else now[2] - before[2])
        return busy / 1e9 < (now[0] - before[0]) / (4 if holds_gil else 2)

    def _other_threads(self) -> list[OtherThread]:
        """The process's other Python threads: their names, clocks, busy time before the block and stacks."""
        frames = sys._current_frames()  # pyright: ignore[reportPrivateUsage]
        me = threading.get_ident()
        found: list[OtherThread] = []
        clocks, base = self._thread_clocks, self._thread_base
        for thread in threading.enumerate():
            ident, native_id = thread.ident, thread.native_id
            if ident in (me, self.thread_id) or ident not in frames or native_id is None:
                continue
            clock = clocks.get(native_id)
            if clock is None:
                clock = clocks[native_id] = ThreadClock(native_id)
            reading = clock.read()
            if reading is None:
                continue
            frame: FrameType | None = frames[ident]
            where: list[tuple[str, int, str]] = []
            while frame is not None and len(where) < MAX_FRAMES:
                code = frame.f_code
                where.append((code.co_filename, frame.f_lineno or code.co_firstlineno, code.co_name))
                frame = frame.f_back
            where.reverse()
            # A thread not read before the block has been idle since it was started (right to a millisecond).
            busy = base.get(native_id, 0)
            found.append((thread.name, clock, busy, frame_summaries(where, lookup_lines=False)))
        return found

    def _sample_stack(self, beat: float) -> _Pending:
        frame = sys._current_frames().get(self.thread_id)  # pyright: ignore[reportPrivateUsage]
        # What the loop thread is asleep on, right after its stack: the watchdog holds the GIL from taking
        # the stack to here (libc reads keep it), so a loop thread on a futex now was on it then too.
        clock = self._clock
        on_futex = holds_gil and clock is not None and clock.on_futex()
        if frame is None:
            return _Pending(beat)
        innermost = frame
        frames: list[FrameType] = []
        where: list[tuple[str, int, str]] = []
        while frame is not None and len(frames) < MAX_FRAMES:
            code = frame.f_code
            frames.append(frame)
            where.append((code.co_filename, frame.f_lineno or code.co_firstlineno, code.co_name))
            frame = frame.f_back
        if self.beat != beat:  # the block ended while we looked: what we saw may be what came after
            return _Pending(beat)
        # On a futex, in Condition.wait (a queue, an Event, future.result()): still waiting for the notice, or
        # notified and now waiting for the GIL (its lock is free again).
        notified = _notified(innermost) if on_futex else None
        # Idle: waiting for I/O. Unless its wait is over and it sleeps on a futex: that is the GIL it waits
        # for (the loop's own wait is epoll or select, never a lock), held by other threads: late, not idle.
        # Trio as a guest: the host loop waits on anything, such as a queue: there only a notified wait counts.
        idle = self._idle(innermost, frames)
        if idle and not (on_futex and (self._in_io_wait(innermost) or notified)):
            return _Pending(beat, idle=True)
        try:
            task_name = self.task_namer(frames) if frames else None
        except Exception:  # task bookkeeping read from another thread: best effort
            task_name = None
        chain = self._await_chain(frames)
        frames.clear()
        # (Without libc reads, reading /proc lets go of the GIL, which the loop thread may be waiting for: only now.)
        gil = on_futex if holds_gil else clock is not None and clock.may_wait_for_gil()
        gil = gil and notified is not False  # still waiting for a notice: on a lock of its own, not the GIL
        gil = gil and clock is not None and self._asleep_so_far(clock)
        where.reverse()
        pending = _Pending(beat, frame_summaries(where, lookup_lines=True), task_name)
        pending.io_wait_over = idle
        pending.await_chain = tuple(frame_summaries(chain, lookup_lines=True))
        if gil:
            assert clock is not None
            pending.gil = True
            pending.looked = clock.read()
            pending.others = self._other_threads()
        return pending

    def _await_chain(self, frames: list[FrameType]) -> list[tuple[str, int, str]]:
        """The await chain of the task in ``frames`` (innermost first), outermost first, as (file, line, function).

        Only while the loop thread is blocked: then nothing moves. The running
        task's coroutines are on the stack (while a coroutine runs, its
        ``cr_await`` is None: the stack is the only place to read them).
        """
        running = [frame for frame in reversed(frames) if frame.f_code.co_flags & _COROUTINE_FLAGS]
        try:
            awaiting = self.awaiters(frames) if running else []
        except Exception:  # task bookkeeping read from another thread: best effort
            awaiting = []
        return [
            (frame.f_code.co_filename, frame.f_lineno or frame.f_code.co_firstlineno, frame.f_code.co_name)
            for frame in (*awaiting, *running)
        ][-MAX_FRAMES:]

    def _look_again(self, pending: _Pending) -> None:
        """Look at a loop thread seen waiting for the GIL, its block still in progress: is it still waiting?

        A GIL waiter wakes every switch interval (5 ms) to ask for the GIL; a
        thread blocked on a lock of its own (``future.result()``,
        ``lock.acquire()``) sleeps through. Either way, one found in any
        other system call (``time.sleep``, a socket read) is not waiting for the GIL.
        """
        clock = self._clock
        before = pending.looked
        if clock is None or not holds_gil or before is None:
            return
        now = clock.read()
        if not clock.may_wait_for_gil() or now is None:
            pending.gil = False
            return
        if now[0] - before[0] >= 3 * sys.getswitchinterval() and now[4] == before[4]:
            pending.gil = False  # asleep on a lock all along, never woken: not the GIL
        pending.looked = now

    def _in_io_wait(self, innermost: FrameType) -> bool:
        """Whether ``innermost`` is the loop's own wait for I/O: selectors' select, uvloop's run, trio's get_events."""
        if innermost is self.entry_frame and not self.trio:
            return True  # uvloop: its wait is in C, under the frame that runs the loop
        code = innermost.f_code
        if self.trio:
            return code.co_name == "get_events" and "_io_" in code.co_filename
        return any(code.co_name == name and code.co_filename.endswith(suffix) for suffix, name in _IDLE_FRAMES)

    def _idle(self, innermost: FrameType, frames: list[FrameType]) -> bool:
        entry = self.entry_frame
        if self.trio:
            return entry is not None and not any(f is entry for f in frames)
        if innermost is entry:
            return True
        code = innermost.f_code
        if not any(code.co_name == name and code.co_filename.endswith(suffix) for suffix, name in _IDLE_FRAMES):
            return False
        # The loop's own wait, not a selector some coroutine uses: _run_once is just outside.
        caller = innermost.f_back
        for _ in range(2):
            if caller is None:
                return False
            if caller.f_code.co_name == "_run_once" and caller.f_code.co_filename.endswith("base_events.py"):
                return True
            caller = caller.f_back
        return False

    def _record_block(self, pending: _Pending, end: float) -> None:
        start = pending.beat + self.interval / 2  # it began within the interval after that beat
        started_at = time.time() - (_monotonic() - start)
        duration = end - start
        cpu_time = cpu_wait = None
        holders: tuple[tuple[str, traceback.StackSummary], ...] = ()
        before = pending.cpu_base
        after = None if before is None or self._clock is None else self._clock.read()
        if before is not None and after is not None and after[0] > before[0]:
            # Measured from the watchdog's last look before the block to now, scaled to the block.
            window = after[0] - before[0]
            ran, waited = (after[1] - before[1]) / 1e9, (after[2] - before[2]) / 1e9
            cpu_time = min(duration, ran * duration / window)
            cpu_wait = min(duration, waited * duration / window)
            # Its own work: a loop that only awaits runs a few ms per late beat; one that ran a quarter of the
            # threshold's worth of CPU without getting back to the loop (a CPU loop in a coroutine, slowed by
            # threads it shares the GIL with) blocked it itself.
            own_work = cpu_time >= min(duration, self.threshold) / 4
            if pending.gil and not own_work and cpu_wait < duration / 2:
                # Seen asleep on a lock, and hardly ran: waiting for the GIL if other threads were busy meanwhile,
                # running Python code (or holding the GIL while the loaded machine made them wait for a CPU).
                # Those busy for an eighth of the block (several take turns) held it.
                holders = _busy(pending.others, duration / 8)
                if not holders:
                    logger.debug(
                        "asyncbridge: a %.3f s block seen on a lock is no GIL wait: no other thread ran since",
                        duration,
                    )
        if pending.io_wait_over and not holders:
            # Seen in the loop's own wait for I/O, that wait over: no GIL wait after all, so an idle loop.
            logger.debug("asyncbridge: a %.3f s late beat in the loop's wait for I/O is no GIL wait", duration)
            return
        for _, stack in holders:
            for frame in stack:
                _ = frame.line  # read source lines here, in the watchdog thread
        event = BlockingEvent(
            duration,
            pending.stack,
            pending.task_name,
            started_at,
            None,
            self.thread_name,
            cpu_time=cpu_time,
            cpu_wait=cpu_wait,
            gil_holders=holders,
            await_chain=pending.await_chain,
        )
        self.record(event)

    def _drain_calls(self) -> None:
        calls = self.calls
        while calls:
            event = calls.popleft()
            for frame in event.stack:
                _ = frame.line  # read source lines here, not on the loop thread
            self.record(event)
