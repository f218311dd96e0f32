"""BlockingDetector: find the line that blocks an event loop, on asyncio, uvloop and trio.

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

Strict mode lives in ``_strict_rules.py`` (which calls block) and ``_strict.py`` (the patching).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Literal

from typing_extensions import Self

from . import _strict, _strict_rules
from ._detector_event import BlockingEvent, frame_summaries
from ._hub import _get_running_loop

if TYPE_CHECKING:
    import trio

__all__ = ["DEFAULT_THRESHOLD", "BlockingDetector", "BlockingEvent"]

logger = logging.getLogger("asyncbridge.blocking")

DEFAULT_THRESHOLD = 0.1  # asyncio's slow_callback_duration; the common default
BEATS_PER_THRESHOLD = 4  # interval = threshold / 4: precise to an eighth of the threshold; not tuned
MIN_INTERVAL = 0.001  # never beat more than 1000 times a second, whatever the threshold
MAX_FRAMES = 256  # a sampled stack is cut at its outer end beyond this; deep ASGI stacks are ~80

_monotonic = time.monotonic
_EMPTY_STACK = traceback.StackSummary()


class _Pending:
    """A late beat seen in progress: the beat it follows, and what the loop thread was doing."""

    __slots__ = ("beat", "idle", "stack", "task_name")

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


# Where an asyncio loop thread waits for I/O, (file name ending, function): innermost there, it is idle.
_IDLE_FRAMES = (
    ("selectors.py", "select"),  # the selector event loops
    ("windows_events.py", "_poll"),  # the proactor event loop
)
_COROUTINE_FLAGS = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR


def _entry_frame(frame: FrameType | None) -> FrameType | None:
    """The first frame outside the coroutines running ``frame``: for uvloop, the loop's caller."""
    while frame is not None and frame.f_code.co_flags & _COROUTINE_FLAGS:
        frame = frame.f_back
    return frame


class _Session:
    """One activation of a detector on one event loop: the heartbeat's clock and the watchdog."""

    def __init__(
        self,
        detector: BlockingDetector,
        task_namer: Callable[[list[FrameType]], str | None],
    ) -> None:
        self.threshold = detector._threshold
        self.interval = detector._interval
        self.trigger = self.threshold + self.interval / 2
        self.record = detector._record
        self.thread_id = threading.get_ident()
        self.thread_name = threading.current_thread().name
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

    # -- the watchdog thread ------------------------------------------------------

    def _run(self) -> None:
        try:
            self._go.wait()
            self._watch()
        except BaseException:  # a bug here must be seen, and must not hang __aexit__
            logger.exception("asyncbridge: the blocking detector's watchdog failed")
        finally:
            self.exited = True
            on_exit = self.on_exit
            if on_exit is not None:
                on_exit()

    def _watch(self) -> None:
        trigger, interval, wait, gaps = self.trigger, self.interval, self._wake.wait, self.gaps
        pending: _Pending | None = None
        while self.stop_at is None:
            if self.calls:
                self._drain_calls()
            beat = self.beat  # read before the gaps: a gap is noted before the beat that ends it
            while gaps:
                pending = self._record_gap(pending, *gaps.popleft())
            if pending is not None:
                if pending.idle and pending.beat == beat:
                    pending = self._sample(beat)  # late but idle so far: is it blocked now?
                wait(interval)  # poll until the heartbeat notes the gap
                continue
            delay = beat + trigger - _monotonic()
            if delay > 0:
                wait(delay)  # sleep until the heartbeat would be overdue
            else:
                pending = self._sample(beat)
        # Stopping: the loop thread is running the stop, so any block is over by now.
        self._drain_calls()
        end, beat = self.stop_at, self.beat
        while gaps:
            pending = self._record_gap(pending, *gaps.popleft())
        if pending is not None:
            self._record_gap(pending, pending.beat, end)  # it lasted until the stop
        elif end - beat >= trigger:  # a gap that ended just before the stop, unseen
            self._record_gap(None, beat, end)
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
        where.reverse()
        return _Pending(beat, frame_summaries(where, lookup_lines=True), task_name)

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
        event = BlockingEvent(end - start, pending.stack, pending.task_name, started_at, None, self.thread_name)
        self.record(event)

    def _drain_calls(self) -> None:
        calls = self.calls
        while calls:
            event = calls.popleft()
            for frame in event.stack:
                _ = frame.line  # read source lines here, not on the loop thread
            self.record(event)


class BlockingDetector:
    """Report every time the event loop is blocked for longer than ``threshold`` seconds.

    Use it around the code to watch, inside a running asyncio, uvloop or trio
    program::

        async with BlockingDetector(threshold=0.05) as detector:
            await serve()
        for event in detector.events:
            print(event)  # duration, task, and the line that blocked

    While active, a heartbeat on the loop and a watchdog thread find each time
    the loop thread does not get back to the loop for longer than
    ``threshold``, whatever the cause (``time.sleep``, a sync driver, a CPU
    loop, an unknown library), and record one :class:`BlockingEvent` per
    block, with the loop thread's stack sampled while it was blocked. Every
    block of at least twice the threshold is reported; shorter ones from
    ``threshold`` on may be.

    Each event is appended to :attr:`events`, logged at WARNING on the
    ``asyncbridge.blocking`` logger, and passed to ``on_block``. All three
    happen in the detector's watchdog thread, never on the loop, so reporting
    adds nothing to the block; when ``async with`` exits, every event has been
    recorded and passed on. An exception raised by ``on_block`` is logged and
    the detector carries on.

    Strict mode (off by default) also catches *known* blocking calls the
    moment the loop thread makes them, however short: ``time.sleep``, blocking
    socket and file I/O, ``subprocess`` waits, contended ``threading.Lock``
    acquires and the rest of the versioned rule set listed in the docs. The
    same calls in worker threads are never reported, nor calls that cannot
    block (a non-blocking socket or descriptor, ``acquire(blocking=False)``,
    a free lock).

    Detectors nest, repeat, and run on several loops in several threads at
    once without interfering: each watches the loop it was entered on.

    Args:
        threshold: seconds the loop may go without getting back to the loop
            before it counts as blocked (default 0.1, asyncio's
            ``slow_callback_duration``).
        on_block: called with each :class:`BlockingEvent`, in the watchdog thread.
        strict: ``False`` (default); ``True`` or ``"report"`` to record each known
            blocking call made on the loop thread as an event (``call`` set, its
            duration measured) once it returns; ``"raise"`` to raise
            :class:`BlockingCallError` instead of making the call.
        allow: strict-mode allow rules, ``"[CALL@]MODULE[:FUNCTION]"``: a call is
            allowed when a frame of its stack belongs to ``MODULE`` (or a
            submodule), in ``FUNCTION`` if given; ``CALL`` (a rule name or an
            ``fnmatch`` pattern, e.g. ``"time.sleep"`` or ``"socket.*"``) limits
            it to those calls. :meth:`unused_allow_rules` tells which never matched.
        strict_rules: the version of the strict rule set to use; default the
            latest. Pin it so that a new asyncbridge release adding rules
            cannot fail your build.

    Raises:
        TypeError: ``threshold`` is not a number, ``on_block`` is not callable,
            or an allow rule is not a string.
        ValueError: ``threshold`` is not positive and finite, ``strict`` is not one
            of the values above, an allow rule is malformed or given without
            strict mode, or ``strict_rules`` is not a known version.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        *,
        on_block: Callable[[BlockingEvent], object] | None = None,
        strict: bool | Literal["report", "raise"] = False,
        allow: Iterable[str] = (),
        strict_rules: int | None = None,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise TypeError(f"threshold must be a number of seconds, got {threshold!r}")
        if not (threshold > 0 and math.isfinite(threshold)):
            raise ValueError(f"threshold must be a positive, finite number of seconds, got {threshold!r}")
        if on_block is not None and not callable(on_block):
            raise TypeError(f"on_block must be a callable taking a BlockingEvent, got {on_block!r}")
        if strict is True:
            strict = "report"
        if strict is not False and strict not in _strict.STRICT_ACTIONS:
            raise ValueError(f"strict must be False, True, 'report' or 'raise', got {strict!r}")
        if isinstance(allow, str):
            allow = [allow]  # one rule given bare: surely not a list of its letters
        parsed = tuple(_strict_rules.parse_allow(rule) for rule in allow)
        if parsed and strict is False:
            raise ValueError("allow rules only apply to strict mode; pass strict=True (or 'raise') with them")
        self._threshold = float(threshold)
        self._interval = max(self._threshold / BEATS_PER_THRESHOLD, MIN_INTERVAL)
        self._on_block = on_block
        self._strict: Literal[False, "report", "raise"] = strict
        self._allow = parsed
        self._strict_rules = _strict_rules.check_version(strict_rules)
        self._matched: set[str] = set()
        self._session: _Session | None = None
        self.events: list[BlockingEvent] = []
        """Every event recorded so far, oldest first (across every ``async with``)."""

    def __repr__(self) -> str:
        state = "active" if self._session is not None else "inactive"
        strict = "" if self._strict is False else f" strict={self._strict!r}"
        return f"<BlockingDetector threshold={self._threshold}{strict} {state}, {len(self.events)} events>"

    @property
    def threshold(self) -> float:
        """Seconds the loop may be away before it counts as blocked."""
        return self._threshold

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats: durations are right to about half of this."""
        return self._interval

    def unused_allow_rules(self) -> list[str]:
        """Return the allow rules that have not matched any call yet, in the order given.

        An allow rule that never matches is dead weight at best, and at worst a
        typo that lets nothing through: check this at the end of a test run.
        """
        matched = set(self._matched)
        session = self._session
        if session is not None and session.strict is not None:
            matched |= session.strict.matched
        return [rule.text for rule in self._allow if rule.text not in matched]

    # -- async with -----------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._session is not None:
            raise RuntimeError("this BlockingDetector is already active; to nest detectors, create another one")
        loop = _get_running_loop()
        if loop is not None:
            self._session = self._start_asyncio(loop, _entry_frame(sys._getframe()))
        elif _in_trio():
            self._session = self._start_trio(_entry_frame(sys._getframe()))
        else:
            raise RuntimeError("BlockingDetector must be entered in a running asyncio (or uvloop) or trio program")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        session = self._session
        if session is None:
            return
        self._session = None
        if session.loop is not None:
            await _stop_asyncio(session, session.loop)
        else:
            await _stop_trio(session)
        self._finish(session)

    # -- attaching without async with (python -m asyncbridge watch) --------------------

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start watching ``loop``, which this thread is about to run. Sync, for loop hooks."""
        if self._session is not None:
            raise RuntimeError("this BlockingDetector is already active")
        self._session = self._start_asyncio(loop, sys._getframe(1))  # the hook runs the loop in C (uvloop)

    def _detach(self) -> None:
        """Stop watching, once the loop has stopped running; wait for the watchdog."""
        session = self._session
        if session is None:
            return
        self._session = None
        session.stop()
        session.join()
        self._finish(session)

    # -- internals --------------------------------------------------------------------

    def _strict_state(self, session: _Session, task_name: Callable[[], str | None]) -> _strict.StrictState | None:
        if self._strict is False:
            return None
        return _strict.StrictState(
            action=self._strict,
            version=self._strict_rules,
            allow=self._allow,
            record=session.calls.append,  # the watchdog takes them from there
            task_name=task_name,
            thread_name=session.thread_name,
            run_frame=session.entry_frame if session.trio else None,
        )

    def _start_asyncio(self, loop: asyncio.AbstractEventLoop, entry: FrameType | None) -> _Session:
        session = _Session(self, lambda frames: _asyncio_task_name(loop))
        session.entry_frame = entry
        session.loop = loop
        session.stop_heartbeat = _AsyncioHeartbeat(session, loop).cancel
        session.start(self._strict_state(session, lambda: _asyncio_task_name(loop)))
        return session

    def _start_trio(self, entry: FrameType | None) -> _Session:
        import trio

        root = trio.lowlevel.current_root_task()
        session = _Session(self, lambda frames: None if root is None else _trio_task_name(root, frames))
        session.entry_frame = entry
        session.trio = True
        scope = trio.CancelScope()
        interval = session.interval

        async def heartbeat() -> None:
            sleep, tick = trio.sleep, session.tick
            with scope:
                while True:
                    tick()  # first thing: if the loop blocked before this task first ran, that gap ends now
                    await sleep(interval)

        trio.lowlevel.spawn_system_task(heartbeat, name="asyncbridge-heartbeat")
        session.stop_heartbeat = scope.cancel
        session.start(self._strict_state(session, _trio_current_task_name))
        return session

    def _finish(self, session: _Session) -> None:
        if session.strict is not None:
            self._matched |= session.strict.matched

    def _record(self, event: BlockingEvent) -> None:
        """Record one event: in the watchdog thread."""
        self.events.append(event)
        logger.warning("%s", event)
        on_block = self._on_block
        if on_block is not None:
            try:
                on_block(event)
            except Exception:
                logger.exception("asyncbridge: the BlockingDetector on_block callback %r raised", on_block)


class _AsyncioHeartbeat:
    """Store the time every interval, from a ``call_later`` callback: no task, no coroutine."""

    __slots__ = ("_call_later", "_handle", "_interval", "_session")

    def __init__(self, session: _Session, loop: asyncio.AbstractEventLoop) -> None:
        self._session = session
        self._interval = session.interval
        self._call_later = loop.call_later
        self._handle = loop.call_later(self._interval, self._beat)

    def _beat(self) -> None:
        self._session.tick()
        self._handle = self._call_later(self._interval, self._beat)

    def cancel(self) -> None:
        self._handle.cancel()


async def _stop_asyncio(session: _Session, loop: asyncio.AbstractEventLoop) -> None:
    done = loop.create_future()

    def wake() -> None:  # in the watchdog thread, as it exits
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
            loop.call_soon_threadsafe(_resolve, done)

    session.on_exit = wake
    session.stop()
    if not session.exited:
        await done


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _stop_trio(session: _Session) -> None:
    import trio

    done = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def wake() -> None:  # in the watchdog thread, as it exits
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(done.set)

    session.on_exit = wake
    session.stop()
    if not session.exited:
        await done.wait()


def _in_trio() -> bool:
    trio_module = sys.modules.get("trio")
    if trio_module is None:
        return False
    try:
        trio_module.lowlevel.current_trio_token()
    except RuntimeError:
        return False
    return True


def _asyncio_task_name(loop: asyncio.AbstractEventLoop) -> str | None:
    # Read from the watchdog thread too: current_task(loop) looks the loop up in a
    # dict (3.10-3.13) or in the loop thread's state (3.14); both are fine to read.
    task = asyncio.current_task(loop)
    return None if task is None else task.get_name()


def _trio_current_task_name() -> str | None:
    import trio

    try:
        return trio.lowlevel.current_task().name
    except RuntimeError:  # a run_sync_soon callback, not a task
        return None


def _trio_task_name(root: trio.lowlevel.Task, frames: list[FrameType]) -> str | None:
    """Name the trio task whose coroutine frame is on the sampled stack (from the watchdog thread)."""
    by_frame: dict[Any, trio.lowlevel.Task] = {}
    todo = [root]
    while todo:
        task = todo.pop()
        frame = getattr(task.coro, "cr_frame", None)
        if frame is not None:
            by_frame[frame] = task
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    for frame in frames:
        found = by_frame.get(frame)
        if found is not None:
            return found.name
    return None
