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
  interval), or, more often, the loop thread waiting for the GIL that another
  thread held (see the next point) and getting it before the watchdog did.
- **An idle loop is not blocked.** If the sample shows the loop thread waiting
  for I/O, the beat is late for another reason: another thread holding the
  GIL (CPU work in a worker thread, as a FastAPI ``def`` endpoint does) or the
  operating system not running the process. That is not reported; the
  watchdog looks again until the beat comes. Idle means: on asyncio, the
  innermost frame is the selector's ``select``; on uvloop (a loop in C) it is
  the frame that started the loop; on trio, the run's ``unrolled_run`` frame
  is not on the stack at all (trio's own I/O wait, or the host loop's wait
  when trio runs as a guest, as anyio's pytest plugin runs it).
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
from ._detector_event import BlockingEvent, frame_summaries, library_frame
from ._strict_rules import AllowRule
from ._thread_clock import Reading, ThreadClock

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


class _Pending:
    """A late beat seen in progress: the beat it follows, and what the loop thread was doing."""

    __slots__ = ("beat", "cpu_base", "gil", "idle", "others", "sampled_at", "stack", "task_name")

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
        self.cpu_base: Reading | None = None  # the loop thread's CPU clocks before the block
        self.gil = False  # the loop thread was asleep on a lock, or on a CPU, when sampled: maybe the GIL
        self.others: list[tuple[str, ThreadClock, int, traceback.StackSummary]] = []  # the other threads then
        self.sampled_at = 0.0


def _ran(
    threads: list[tuple[str, ThreadClock, int, traceback.StackSummary]], least: float
) -> tuple[tuple[str, traceback.StackSummary], ...]:
    """Those of ``threads`` (name, clock, CPU ns then, stack) that ran more than ``least`` seconds since then."""
    found: list[tuple[str, traceback.StackSummary]] = []
    for name, clock, before, stack in threads:
        reading = clock.read()
        if reading is not None and (reading[1] - before) / 1e9 > least:
            found.append((name, stack))
    return tuple(found)


def _in_own_code(stack: traceback.StackSummary) -> bool:
    """Whether a thread's innermost frame is outside the standard library and asyncbridge: not parked waiting."""
    return bool(stack) and library_frame(stack[-1].filename) == 0


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
        self.task_namer = task_namer
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
            self.exited = True
            on_exit = self.on_exit
            if on_exit is not None:
                on_exit()

    def _watch(self) -> None:
        self._clock = clock = ThreadClock(self.native_id, keep_open=True)
        self._cpu_base = clock.read()
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
                wait(interval)  # poll until the heartbeat notes the gap
                continue
            delay = beat + trigger - _monotonic()
            if delay > 0:
                self._cpu_base = clock.read()  # the loop is on time: the clocks before any next block
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

    def _asleep_so_far(self, clock: ThreadClock) -> bool:
        """Whether the loop thread has mostly slept since the watchdog's last look: neither ran nor waited for a CPU.

        Only then may it be waiting for the GIL; and a starved thread may hold
        the GIL while it waits for a CPU, so the watchdog must not let go of
        the GIL to look at other threads then: it would wait as long to get it back.
        """
        before, now = self._cpu_base, clock.read()
        if before is None or now is None or now[0] <= before[0]:
            return False
        return (now[1] - before[1] + now[2] - before[2]) / 1e9 < (now[0] - before[0]) / 2

    def _other_threads(self) -> list[tuple[str, ThreadClock, int, traceback.StackSummary]]:
        """The process's other Python threads: their names, clocks, CPU time so far and stacks."""
        frames = sys._current_frames()  # pyright: ignore[reportPrivateUsage]
        me = threading.get_ident()
        found: list[tuple[str, ThreadClock, int, traceback.StackSummary]] = []
        for thread in threading.enumerate():
            ident, native_id = thread.ident, thread.native_id
            if ident in (me, self.thread_id) or ident not in frames or native_id is None:
                continue
            clock = ThreadClock(native_id)
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
            found.append((thread.name, clock, reading[1], frame_summaries(where, lookup_lines=False)))
        return found

    def _sample_stack(self, beat: float) -> _Pending:
        frame = sys._current_frames().get(self.thread_id)  # pyright: ignore[reportPrivateUsage]
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
        if self._idle(innermost, frames):
            return _Pending(beat, idle=True)
        try:
            task_name = self.task_namer(frames) if frames else None
        except Exception:  # task bookkeeping read from another thread: best effort
            task_name = None
        frames.clear()
        # Only now, the stack taken: reading /proc lets go of the GIL, which the loop thread may be waiting for.
        clock = self._clock
        gil = clock is not None and clock.may_wait_for_gil() and self._asleep_so_far(clock)
        where.reverse()
        pending = _Pending(beat, frame_summaries(where, lookup_lines=True), task_name)
        if gil:
            pending.gil = True
            pending.others = self._other_threads()
            pending.sampled_at = _monotonic()
        return pending

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
            others_ran = after[3] - before[3] - ran  # the other threads' CPU time, this watchdog's included
            # Against the block's duration: the window holds it, and may be longer (so these are lower bounds).
            if pending.gil and ran + waited < duration / 2 and others_ran >= duration / 2:
                # Mostly asleep, on a lock, while other threads ran Python code: waiting for the GIL.
                # Name the threads that ran for a quarter of the time since the sample (any, if it was short).
                # Failing that (the block ended as it was sampled), those that were in code of their own then.
                holders = _ran(pending.others, max(0.0, (after[0] - pending.sampled_at) / 4 - 0.005)) or tuple(
                    (name, stack) for name, _, _, stack in pending.others if _in_own_code(stack)
                )
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
        )
        self.record(event)

    def _drain_calls(self) -> None:
        calls = self.calls
        while calls:
            event = calls.popleft()
            for frame in event.stack:
                _ = frame.line  # read source lines here, not on the loop thread
            self.record(event)
