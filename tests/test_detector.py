"""BlockingDetector: every block found once, measured to its end, with the line that blocked."""

from __future__ import annotations

import concurrent.futures
import functools
import gc
import json
import logging
import os
import platform
import selectors
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import asyncbridge
from _detector_blockers import NAP_LINE, SPIN_LINES, lines_of, nap, spin
from asyncbridge import BlockingDetector, BlockingEvent
from asyncbridge._detector_session import DetectorSession, DetectorSettings
from asyncbridge._thread_clock import holds_gil

# These tests block their loop on purpose, each under its own detector.
pytestmark = [pytest.mark.anyio, pytest.mark.blocking_detector(enabled=False)]

THRESHOLD = 0.05
BLOCK = 0.3  # six times the threshold: reported whatever the machine's load


def assert_duration(event: BlockingEvent, real: float, detector: BlockingDetector) -> None:
    tolerance = 0.1 * real + detector.heartbeat_interval
    assert abs(event.duration - real) <= tolerance, (event.duration, real, tolerance)


def here() -> int:
    """The line number of the caller's next line."""
    return sys._getframe(1).f_lineno + 1


async def wait_for_events(detector: BlockingDetector, count: int) -> None:
    with anyio.fail_after(10):
        while len(detector.events) < count:
            await anyio.sleep(0.005)


async def on_a_quiet_try(attempt: Callable[[], Awaitable[None]], tries: int = 3) -> None:
    """Run a timing-sensitive check up to ``tries`` times; pass on the first try that passes.

    This machine is shared: any one try can be stalled by the operating system
    for longer than a threshold. A detector that is wrong fails every try.
    """
    for n in range(1, tries + 1):
        try:
            await attempt()
        except AssertionError:
            if n == tries:
                raise
        else:
            return


def on_a_quiet_try_sync(attempt: Callable[[], None], tries: int = 3) -> None:
    """The same, for a sync check."""
    for n in range(1, tries + 1):
        try:
            attempt()
        except AssertionError:
            if n == tries:
                raise
        else:
            return


def watchdogs() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "asyncbridge-watchdog"]


async def test_sleep_block_is_reported_once_with_duration_line_and_task() -> None:
    """A time.sleep block is one event: its duration, this line, innermost last, the task, the start."""

    async def attempt() -> None:
        async with BlockingDetector(THRESHOLD) as detector:
            await anyio.lowlevel.checkpoint()
            task_name = anyio.get_current_task().name
            started, t0 = time.time(), time.monotonic()
            line = here()
            time.sleep(BLOCK)
            real = time.monotonic() - t0
            await wait_for_events(detector, 1)
            await anyio.sleep(2 * THRESHOLD)  # room for a wrong second event to show up
        assert len(detector.events) == 1
        event = detector.events[0]
        assert_duration(event, real, detector)
        innermost = event.stack[-1]
        assert (innermost.filename, innermost.lineno, innermost.name) == (
            __file__,
            line,
            "attempt",
        )
        assert innermost.line == "time.sleep(BLOCK)"
        assert event.site is innermost
        assert event.call is None
        assert event.task_name == task_name
        assert event.thread_name == threading.current_thread().name
        assert abs(event.started_at - started) <= 0.1 * real + detector.heartbeat_interval

    await on_a_quiet_try(attempt)


async def test_cpu_loop_is_reported_naming_the_loop_line() -> None:
    """A CPU-bound loop (holding the GIL) is one event naming the function and line of the loop."""

    async def attempt() -> None:
        async with BlockingDetector(THRESHOLD) as detector:
            await anyio.lowlevel.checkpoint()
            t0 = time.monotonic()
            spin(BLOCK)
            real = time.monotonic() - t0
        assert len(detector.events) == 1
        event = detector.events[0]
        assert_duration(event, real, detector)
        assert event.site is not None
        assert (event.site.name, event.site.filename) == ("spin", spin.__code__.co_filename)
        assert event.site.lineno in SPIN_LINES
        assert [frame.name for frame in event.stack[-2:]] == ["attempt", "spin"]

    await on_a_quiet_try(attempt)


async def test_consecutive_blocks_are_each_reported_once_in_order() -> None:
    """Blocks of several lengths, one after another, give one event each, each measured."""

    async def attempt() -> None:
        lengths = [0.12, 0.3, 0.2]
        reals: list[float] = []
        async with BlockingDetector(THRESHOLD) as detector:
            for count, length in enumerate(lengths, 1):
                t0 = time.monotonic()
                nap(length)
                reals.append(time.monotonic() - t0)
                await wait_for_events(detector, count)
            await anyio.sleep(2 * THRESHOLD)
        assert len(detector.events) == len(lengths)
        for event, real in zip(detector.events, reals, strict=True):
            assert_duration(event, real, detector)
            assert event.site is not None
            assert (event.site.name, event.site.lineno) == ("nap", NAP_LINE)

    await on_a_quiet_try(attempt)


async def test_block_just_before_exit_is_recorded_by_the_time_exit_returns() -> None:
    """A block that ends right before __aexit__ is in events when async with is done, measured."""

    async def attempt() -> None:
        async with BlockingDetector(THRESHOLD) as detector:
            await anyio.lowlevel.checkpoint()
            t0 = time.monotonic()
            nap(BLOCK)
            real = time.monotonic() - t0
        assert len(detector.events) == 1
        assert_duration(detector.events[0], real, detector)

    await on_a_quiet_try(attempt)


async def test_busy_cooperative_workload_reports_nothing() -> None:
    """Two thousand tasks that yield often keep the loop busy but never blocked: no event."""
    # One loop iteration (a step of every task) takes about 10 ms here, a tenth of the default threshold.

    async def attempt() -> None:
        done = 0

        async def worker() -> None:
            nonlocal done
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            done += 1

        # A full garbage collection of the test runner's heap, which 2000 new tasks can set off, is a real
        # block of 0.15 s on Python 3.10, of the runner's making, not this workload's: set that heap aside.
        gc.collect()
        gc.freeze()
        try:
            async with BlockingDetector() as detector, anyio.create_task_group() as tg:
                for n in range(2000):
                    tg.start_soon(worker)
                    if n % 100 == 0:
                        await anyio.lowlevel.checkpoint()  # spawning thousands at once would itself block
        finally:
            gc.unfreeze()
        assert done == 2000
        assert detector.events == []

    await on_a_quiet_try(attempt)


async def test_work_in_worker_threads_is_not_reported() -> None:
    """Blocking calls and CPU loops sent to threads (asyncbridge's and anyio's) leave the loop free."""

    async def attempt() -> None:
        async with BlockingDetector(THRESHOLD) as detector:
            await asyncbridge.to_thread(nap, BLOCK)
            await anyio.to_thread.run_sync(spin, BLOCK)
            await asyncbridge.async_wrap(spin)(BLOCK)
        assert detector.events == []

    await on_a_quiet_try(attempt)


async def test_task_name_is_the_blocking_task() -> None:
    """The event names the task that blocked, not the one that entered the detector."""

    async def blocker() -> None:
        nap(BLOCK)

    async with BlockingDetector(THRESHOLD) as detector, anyio.create_task_group() as tg:
        tg.start_soon(blocker, name="the-blocker")
    assert [event.task_name for event in detector.events] == ["the-blocker"]


async def test_on_block_gets_each_event_in_the_watchdog_thread() -> None:
    """on_block receives the recorded event, called from the watchdog thread, not the loop's."""
    seen: list[tuple[BlockingEvent, str]] = []
    loop_thread = threading.current_thread().name
    async with BlockingDetector(THRESHOLD, on_block=lambda e: seen.append((e, threading.current_thread().name))) as d:
        nap(BLOCK)
    assert [event for event, _ in seen] == d.events
    assert len(seen) == 1
    assert seen[0][1] == "asyncbridge-watchdog" != loop_thread


async def test_on_block_exception_is_logged_and_detection_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """An exception in on_block is logged with its traceback; later blocks are still recorded."""
    calls: list[BlockingEvent] = []

    def on_block(event: BlockingEvent) -> None:
        calls.append(event)
        raise ValueError("callback bug")

    with caplog.at_level(logging.ERROR, logger="asyncbridge.blocking"):
        async with BlockingDetector(THRESHOLD, on_block=on_block) as detector:
            nap(0.15)
            await wait_for_events(detector, 1)
            nap(0.15)
    assert len(detector.events) == len(calls) == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2
    assert "on_block callback" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], ValueError)


async def test_event_is_logged_at_warning_as_a_short_report(caplog: pytest.LogCaptureFixture) -> None:
    """Each event is logged on asyncbridge.blocking at WARNING: duration, task, the line, frames above."""
    with caplog.at_level(logging.WARNING, logger="asyncbridge.blocking"):
        async with BlockingDetector(THRESHOLD) as detector:
            nap(BLOCK)
    [record] = [r for r in caplog.records if r.name == "asyncbridge.blocking"]
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message == detector.events[0].format()
    assert message.startswith("event loop blocked for 0.")
    assert f"at nap ({nap.__code__.co_filename}:{NAP_LINE})" in message
    assert "time.sleep(seconds)" in message
    assert "test_event_is_logged_at_warning_as_a_short_report" in message  # a frame above


async def test_nested_detectors_each_see_the_blocks_in_their_scope() -> None:
    """An inner detector reports its block; the outer reports it too, and its own later block."""

    async def attempt() -> None:
        async with BlockingDetector(THRESHOLD) as outer:
            async with BlockingDetector(THRESHOLD) as inner:
                nap(BLOCK)
            # Two blocks with no heartbeat between them would be one block of both lengths.
            await wait_for_events(outer, 1)
            spin(BLOCK)
        assert [e.site.name for e in inner.events if e.site] == ["nap"]
        assert [e.site.name for e in outer.events if e.site] == ["nap", "spin"]
        assert len(inner.events) == 1
        assert len(outer.events) == 2

    await on_a_quiet_try(attempt)


async def test_repeated_detectors_see_only_their_own_blocks() -> None:
    """Detectors used one after another do not see each other's blocks, nor blocks in between."""

    async def attempt() -> None:
        async with BlockingDetector(THRESHOLD) as first:
            nap(BLOCK)
        spin(BLOCK)  # watched by nobody
        async with BlockingDetector(THRESHOLD) as second:
            await anyio.sleep(THRESHOLD)
        async with BlockingDetector(THRESHOLD) as third:
            spin(BLOCK)
        assert [e.site.name for e in first.events if e.site] == ["nap"]
        assert second.events == []
        assert [e.site.name for e in third.events if e.site] == ["spin"]

    await on_a_quiet_try(attempt)


async def test_detector_can_be_entered_again_and_keeps_its_events() -> None:
    """One detector used twice in sequence accumulates the events of both uses."""
    detector = BlockingDetector(THRESHOLD)
    async with detector:
        nap(0.15)
    async with detector:
        nap(0.15)
    assert len(detector.events) == 2


async def test_entering_an_active_detector_raises() -> None:
    """Entering a detector that is already active is a RuntimeError telling to create another."""
    async with BlockingDetector(THRESHOLD) as detector:
        with pytest.raises(RuntimeError, match="already active; to nest detectors, create another one"):
            await detector.__aenter__()


async def test_watchdog_thread_ends_after_exit() -> None:
    """Leaving the detector stops its watchdog thread (exit never joins it on the loop thread)."""
    before = len(watchdogs())
    async with BlockingDetector(THRESHOLD):
        assert len(watchdogs()) == before + 1
    with anyio.fail_after(5):
        while len(watchdogs()) > before:  # it has reported; it is returning from its run()
            await anyio.sleep(0.001)


def test_detectors_on_several_loops_in_several_threads_do_not_interfere() -> None:
    """asyncio, uvloop and trio loops in three threads, all blocking at once: each reports its own."""

    def attempt() -> None:
        backends: list[tuple[str, dict[str, Any]]] = [("asyncio", {}), ("asyncio", {"use_uvloop": True}), ("trio", {})]
        barrier = threading.Barrier(len(backends))
        results: dict[str, list[BlockingEvent]] = {}
        errors: list[BaseException] = []

        async def watched(name: str) -> None:
            async with BlockingDetector(THRESHOLD) as detector:
                await anyio.to_thread.run_sync(barrier.wait)
                # Each thread blocks in its own way, at the same time as the others.
                {"asyncio": nap, "uvloop": spin, "trio": nap}[name](BLOCK)
                await anyio.to_thread.run_sync(barrier.wait)
                for _ in range(20):
                    await anyio.sleep(0.005)
            results[name] = detector.events

        def run(name: str, backend: str, options: dict[str, Any]) -> None:
            try:
                anyio.run(watched, name, backend=backend, backend_options=options)
            except BaseException as exc:  # reported by the main thread below
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(name, backend, options), name=f"loop-{name}")
            for name, (backend, options) in zip(["asyncio", "uvloop", "trio"], backends, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        for name in ["asyncio", "uvloop", "trio"]:
            events = results[name]
            assert len(events) == 1, (name, events)
            assert events[0].thread_name == f"loop-{name}"
            assert events[0].site is not None
            assert events[0].site.name == ("spin" if name == "uvloop" else "nap")

    on_a_quiet_try_sync(attempt)


def test_gap_the_watchdog_never_saw_in_progress_is_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    """A late beat the watchdog did not see blocked (GIL held elsewhere, or too short) is only logged at DEBUG."""
    detector = BlockingDetector(THRESHOLD)
    settings = DetectorSettings(detector.threshold, detector.heartbeat_interval, strict=False, strict_rules=1, allow=())
    events: list[BlockingEvent] = []
    session = DetectorSession(settings, events.append, lambda frames: None)
    session.beat -= 1.0  # the last beat was a second ago...
    session.tick()  # ...and the heartbeat is only now back
    with caplog.at_level(logging.DEBUG, logger="asyncbridge.blocking"):
        session.start(None)
        session.stop()
        session.join()
    assert events == []
    assert "gap between heartbeats was not seen in progress" in caplog.text


async def test_a_coroutine_waiting_in_its_own_selector_is_blocked_not_idle() -> None:
    """A selector wait made by a coroutine is a block, unlike the loop's own wait for I/O."""
    a, b = socket.socketpair()
    with a, b, selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ)
        async with BlockingDetector(THRESHOLD) as detector:
            assert selector.select(BLOCK) == []
    [event] = detector.events
    assert event.site is not None
    assert event.site.name == "test_a_coroutine_waiting_in_its_own_selector_is_blocked_not_idle"


def crunch_numbers(running: list[bool]) -> int:
    """Pure-Python CPU work for a worker thread: it holds the GIL but for the switches the interpreter forces."""
    total = 0
    while running[0]:
        for i in range(1000):
            total += i * i
    return total


CRUNCH_LINES = lines_of(crunch_numbers, "total") | lines_of(crunch_numbers, "while") | lines_of(crunch_numbers, "for")

needs_gil_figures = pytest.mark.skipif(
    not (sys.platform == "linux" and holds_gil and platform.machine().lower() in ("x86_64", "amd64", "aarch64")),
    reason="tells GIL waits apart on Linux only (per-thread /proc figures, read with the GIL held through ctypes)",
)


def describe(events: list[BlockingEvent]) -> str:
    """Events, with the kernel's figures, for an assertion's message."""
    return "\n\n".join(
        f"[{event.cause}: {event.duration:.3f} s, ran {event.cpu_time}, waited for a CPU {event.cpu_wait}]\n{event}"
        for event in events
    )


def held_by(event: BlockingEvent, function: Callable[..., object]) -> list[traceback.FrameSummary]:
    """The sites of ``event``'s GIL holders that were running ``function`` when sampled (their own innermost frames)."""
    code = function.__code__
    sites = [BlockingEvent(0.0, stack, None, 0.0).site for _, stack in event.gil_holders]
    where = (code.co_filename, code.co_name)
    return [site for site in sites if site is not None and (site.filename, site.name) == where]


def assert_blames_the_gil_holders(event: BlockingEvent, function: Callable[..., object], lines: set[int]) -> None:
    """A GIL wait whose report leads with the threads that held the GIL, one of them running ``function``.

    (Other threads busy at the time, such as workers other tests left running, may be named too.)
    """
    assert event.cause == "gil", event
    held = held_by(event, function)
    assert held, event
    assert all(site.lineno in lines for site in held), event
    text = event.format()
    assert text.startswith(f"event loop waited {event.duration:.3f} s for the GIL"), text
    assert f", in {function.__name__}\n" in text, text  # the holder's stack, with its lines
    assert "event loop blocked" not in text


@needs_gil_figures
async def test_a_loop_that_only_awaits_beside_cpu_bound_threads_names_their_function() -> None:
    """Worker threads running pure-Python CPU work make a loop that only awaits wait for the GIL: the event says so.

    Real threads, nothing scripted: two threads run ``crunch_numbers`` while the
    loop only awaits short sleeps. Every time the loop is late, it was waiting
    for the GIL (or, on a loaded machine, for a CPU): no event blames the loop's line.
    """
    running = [True]
    threads = [
        threading.Thread(target=crunch_numbers, args=(running,), name=f"crunch-{n}", daemon=True) for n in range(2)
    ]
    for thread in threads:
        thread.start()  # before the detector: Thread.start() on the loop waits for the thread to take the GIL
    try:
        async with BlockingDetector(THRESHOLD) as detector:
            with anyio.fail_after(60):
                while not any(event.cause == "gil" for event in detector.events):
                    await anyio.sleep(0.001)  # all the loop does
            events = list(detector.events)  # those while the threads crunched
            running[0] = False
    finally:
        running[0] = False
        for thread in threads:
            thread.join()
    gil_waits = [event for event in events if event.cause == "gil"]
    assert gil_waits
    for event in gil_waits:
        assert_blames_the_gil_holders(event, crunch_numbers, CRUNCH_LINES)
        assert {name for name, _ in event.gil_holders} & {"crunch-0", "crunch-1"}, describe(events)
    # No event blames this test's line. (Others may be blocks of the backend's own: trio as anyio's guest
    # starts a thread per I/O wait, and Thread.start() on the loop waits until that thread gets the GIL.)
    this_test = sys._getframe().f_code.co_name
    for event in events:
        assert event.cause == "gil" or event.site is None or event.site.name != this_test, describe(events)


async def idle_beside_a_thread_hogging_the_gil(
    run_sync: Callable[[Callable[[], object]], Awaitable[object]],
) -> list[BlockingEvent]:
    """Await a thread that runs ``spin`` for a second, with a switch interval of 100 ms; return the events."""
    await run_sync(int)  # the worker thread starts before the detector: Thread.start() waits for the GIL
    previous = sys.getswitchinterval()
    sys.setswitchinterval(0.1)  # the worker thread keeps the GIL 100 ms at a time
    try:
        async with BlockingDetector(THRESHOLD) as detector:
            await run_sync(functools.partial(spin, 1.0))
    finally:
        sys.setswitchinterval(previous)
    return detector.events


def assert_never_blames_the_idle_loop(events: list[BlockingEvent]) -> None:
    """No event puts the idle loop's own line in the dock: each is a GIL wait naming another thread, or starvation.

    Whether the watchdog, which needs the GIL too, sees such a wait in progress is
    down to the scheduler: under load it mostly does; on a quiet machine most of these
    0.1 s waits are over before it looks, and are logged at DEBUG, not reported.
    So this checks what is reported, not how often.
    """
    assert {event.cause for event in events} <= {"gil", "starved"}, describe(events)
    for event in events:
        if event.cause == "gil":
            assert event.gil_holders, describe([event])
            assert threading.main_thread().name not in {name for name, _ in event.gil_holders}, describe([event])
            assert "event loop blocked" not in event.format(), describe([event])


@needs_gil_figures
async def test_an_idle_loop_kept_from_the_gil_is_never_blamed_on_its_own_line(anyio_backend_name: str) -> None:
    """An idle loop whose wait for I/O is over but that waits for the GIL (a FastAPI def endpoint) is a GIL wait.

    The loop, waiting for a thread's result, is late each time the worker
    keeps the GIL: what is reported names the worker thread, never a line of the loop's.
    """
    if anyio_backend_name == "trio":
        # The host loop waits on a queue that trio's I/O thread fills: that thread waits for the GIL, the
        # loop thread for the queue, like any idle guest. trio.run's own wait is the test below.
        pytest.skip("anyio runs trio as a guest, whose idle host loop waits on a queue, not for the GIL")
    assert_never_blames_the_idle_loop(await idle_beside_a_thread_hogging_the_gil(anyio.to_thread.run_sync))


@needs_gil_figures
async def test_a_loop_waiting_on_a_thread_result_is_blocked_not_a_gil_wait() -> None:
    """future.result() on the loop while a worker thread crunches: the loop's own block, at that line.

    The loop thread sleeps on a lock (the future's condition) while another
    thread runs Python code, as in a GIL wait; but it waits for the notice, not
    for the GIL, so the event blames the line that waited, not the worker.
    """

    async def attempt() -> None:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(int).result()  # the worker started before the detector: Thread.start() waits for the GIL
            async with BlockingDetector(THRESHOLD) as detector:
                await anyio.lowlevel.checkpoint()
                future = pool.submit(spin, BLOCK)
                line = here()
                future.result()
        [event] = detector.events
        assert event.cause == "blocked", event
        assert event.gil_holders == ()
        assert event.site is not None
        assert (event.site.name, event.site.lineno) == ("attempt", line), event

    await on_a_quiet_try(attempt)


def burn_cpu(seconds: float) -> None:
    """Use ``seconds`` of this thread's CPU time, however long other threads keep it from the GIL."""
    deadline = time.thread_time() + seconds
    while time.thread_time() < deadline:
        pass


@needs_gil_figures
async def test_a_cpu_loop_in_a_coroutine_beside_cpu_bound_threads_is_still_its_own_block() -> None:
    """A coroutine's CPU loop, slowed by threads it shares the GIL with, is a block at its own line, not a GIL wait.

    The loop thread spends most of the block waiting for the GIL, as a loop
    that only awaits would; but it ran 0.2 s of CPU without getting back to
    the loop, which a loop that only awaits never does.
    """
    running = [True]
    threads = [threading.Thread(target=crunch_numbers, args=(running,), daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        async with BlockingDetector(THRESHOLD) as detector:
            await anyio.sleep(2 * THRESHOLD)
            burn_cpu(0.2)
            await detector.checkpoint()
    finally:
        running[0] = False
        for thread in threads:
            thread.join()
    # Besides GIL waits while the loop awaited, the block: at the CPU loop's line, not blaming the threads.
    # (Or starved, on a loaded machine: its thread waited for a CPU most of the time.)
    ours = [event for event in detector.events if event.site is not None and event.site.name == "burn_cpu"]
    assert ours, describe(detector.events)
    assert [event.cause in ("blocked", "starved") for event in ours] == [True] * len(ours), describe(ours)
    assert [event.gil_holders for event in ours] == [()] * len(ours)


@needs_gil_figures
def test_an_idle_trio_run_kept_from_the_gil_is_never_blamed_on_its_own_line() -> None:
    """The same under trio.run, whose idle wait is its own (epoll), not a guest's host loop's."""
    import trio

    assert_never_blames_the_idle_loop(trio.run(idle_beside_a_thread_hogging_the_gil, trio.to_thread.run_sync))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"threshold": "0.1"}, TypeError, "threshold must be a number of seconds, got '0.1'"),
        ({"threshold": True}, TypeError, "threshold must be a number of seconds, got True"),
        ({"threshold": 0}, ValueError, "threshold must be a positive number of seconds, got 0"),
        ({"threshold": float("nan")}, ValueError, "threshold must be a positive number of seconds, got nan"),
        ({"threshold": float("inf")}, ValueError, "threshold must be a finite number of seconds, got inf"),
        ({"threshold": 1e12}, ValueError, "threshold must be at most"),
        ({"threshold": -1.0}, ValueError, "got -1.0"),
        ({"on_block": 3}, TypeError, "on_block must be a callable taking a BlockingEvent, got 3"),
        ({"strict": "loud"}, ValueError, "strict must be False, True, 'report' or 'raise', got 'loud'"),
        ({"allow": ["mymodule"]}, ValueError, "allow rules only apply to strict mode"),
        ({"strict": True, "allow": [3]}, TypeError, "allow rules are strings"),
        ({"strict": True, "allow": ["not a module"]}, ValueError, "is not of the form [CALL@]MODULE[:FUNCTION]"),
        ({"strict": True, "strict_rules": 99}, ValueError, "strict_rules=99 is not a known rule set"),
        ({"strict": True, "strict_rules": "1"}, TypeError, "strict_rules must be an int"),
    ],
)
def test_bad_arguments_raise_builtin_errors_saying_what_was_wrong(
    kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    """Wrong arguments raise TypeError or ValueError naming the argument and the value."""
    with pytest.raises(error) as info:
        BlockingDetector(**kwargs)
    assert message in str(info.value)


def test_entering_outside_an_event_loop_raises() -> None:
    """Entering the detector with no running asyncio loop or trio run is a RuntimeError."""
    coro = BlockingDetector().__aenter__()
    with pytest.raises(RuntimeError, match="must be entered in a running asyncio"):
        coro.send(None)


def test_properties_and_repr() -> None:
    """threshold, heartbeat_interval (a quarter of it) and repr tell the configuration."""
    detector = BlockingDetector(0.2, strict="raise")
    assert detector.threshold == 0.2
    assert detector.heartbeat_interval == pytest.approx(0.05)
    assert repr(detector) == "<BlockingDetector threshold=0.2 strict='raise' inactive, 0 events>"
    assert BlockingDetector(0.0001).heartbeat_interval == 0.001  # never more than 1000 beats a second


def _stack(*frames: tuple[str, int, str]) -> traceback.StackSummary:
    return traceback.StackSummary.from_list(
        [traceback.FrameSummary(f, n, name, lookup_line=False, line=f"line {n}") for f, n, name in frames]
    )


def test_site_is_the_innermost_frame_of_your_own_code() -> None:
    """The site skips standard library and installed package frames, falling back to them."""
    stdlib = traceback.__file__
    package = anyio.__file__
    mine = __file__
    event = BlockingEvent(0.2, _stack((mine, 1, "handler"), (package, 2, "lib"), (stdlib, 3, "recv")), "t", 0.0)
    assert event.site is not None
    assert event.site.name == "handler"
    event = BlockingEvent(0.2, _stack((stdlib, 1, "outer"), (package, 2, "lib"), (stdlib, 3, "recv")), "t", 0.0)
    assert event.site is not None
    assert event.site.name == "lib"
    event = BlockingEvent(0.2, _stack((stdlib, 1, "outer"), (stdlib, 3, "recv")), "t", 0.0)
    assert event.site is not None
    assert event.site.name == "recv"


def test_report_shows_a_few_frames_above_the_site_and_elides_long_stacks() -> None:
    """The report shows the site's callers (three) and everything below it, eliding the middle."""
    frames = [(__file__, n, f"f{n}") for n in range(1, 30)]
    event = BlockingEvent(0.25, _stack(*frames), None, 0.0, thread_name="worker-loop")
    report = event.format()
    assert report.splitlines()[0] == "event loop blocked for 0.250 s (thread 'worker-loop')"
    assert report.splitlines()[1] == f"  at f29 ({__file__}:29)"
    assert "in f26" in report
    assert "in f25" not in report
    short = BlockingEvent(0.25, _stack(*frames[:5]), "main", 0.0).format()
    assert "more frames" not in short
    assert "in f2" in short
    assert "in f1" not in short
    assert "in task 'main'" in short


def test_report_of_strict_mode_calls() -> None:
    """A strict-mode event reads as a blocking call, timed, or refused when strict mode raised."""
    stack = _stack((__file__, 7, "handler"))
    assert (
        BlockingEvent(0.5, stack, "t", 0.0, call="time.sleep")
        .format()
        .startswith("blocking call time.sleep() on the event loop thread took 0.500 s in task 't'")
    )
    assert (
        BlockingEvent(0.0, stack, None, 0.0, call="time.sleep")
        .format()
        .startswith("blocking call time.sleep() refused on the event loop thread")
    )
    assert (
        str(BlockingEvent(0.0, stack, None, 0.0, call="os.read"))
        == BlockingEvent(0.0, stack, None, 0.0, call="os.read").format()
    )


async def test_checkpoint_makes_a_block_that_just_ended_visible_in_events() -> None:
    """Right after a block, events may not hold it yet; after `await detector.checkpoint()` it does, once."""

    async def attempt() -> None:
        async with BlockingDetector(THRESHOLD) as detector:
            await anyio.lowlevel.checkpoint()
            line = here()
            time.sleep(BLOCK)
            await detector.checkpoint()
            assert [(e.stack[-1].lineno, e.call) for e in detector.events] == [(line, None)]
            await detector.checkpoint()  # nothing new: returns, adds nothing
            assert len(detector.events) == 1
        assert len(detector.events) == 1

    await on_a_quiet_try(attempt)


async def test_checkpoint_returns_at_once_when_nothing_blocked_or_inactive() -> None:
    """A checkpoint with no block records nothing, and an inactive detector's returns straight away."""
    detector = BlockingDetector(THRESHOLD)
    with anyio.fail_after(5):
        await detector.checkpoint()
        async with detector:
            await detector.checkpoint()
    assert detector.events == []


STARVE = """
import json, os, subprocess, sys, threading, time
import anyio
from asyncbridge import BlockingDetector

def sleeper():
    time.sleep(0.5)  # a real block, on a CPU of its own by then

# Busy from the line it is sent until its parent is gone, even killed.
HOG = "import os, sys\\nparent = os.getppid()\\nsys.stdin.readline()\\nwhile os.getppid() == parent:\\n    pass\\n"

def cruncher():
    start = time.thread_time()
    while time.thread_time() < start + 0.5:  # a real block too: 0.5 s of pure Python on the loop thread
        pass

async def spinner(until):
    while time.monotonic() < until:
        await anyio.sleep(0)

async def main():
    everywhere = os.sched_getaffinity(0)
    cpu = min(everywhere)
    # Started (fork, exec, interpreter start-up) before the detector runs; idle until the starvation starts.
    hog = subprocess.Popen([sys.executable, "-c", HOG], stdin=subprocess.PIPE)
    async with BlockingDetector(0.05) as detector:  # its watchdog thread is free to run on any CPU
        me = threading.get_native_id()
        await anyio.sleep(0)
        cruncher()
        await detector.checkpoint()
        crunched = list(detector.events)
        try:
            os.sched_setaffinity(hog.pid, {cpu})
            os.sched_setaffinity(me, {cpu})  # the loop thread only: it shares one CPU with the hog
            os.setpriority(os.PRIO_PROCESS, me, 19)  # and yields it to the hog (nice 19 against 0)
            hog.stdin.write(b"go\\n")
            hog.stdin.flush()
            async with anyio.create_task_group() as group:
                for _ in range(50):
                    group.start_soon(spinner, time.monotonic() + 1.5)
        finally:
            hog.kill()
            hog.wait()
            os.sched_setaffinity(me, everywhere)
        await detector.checkpoint()
        starved = detector.events[len(crunched):]
        sleeper()
        await detector.checkpoint()
        blocked = detector.events[len(crunched) + len(starved):]
    print(json.dumps([[(e.cause, e.duration, e.cpu_wait, e.cpu_time, e.stack[-1].name) for e in events]
                      for events in (starved, blocked, crunched)]))

# This process's session is its own scheduling group (the test starts it so): where allowed (root), put
# that group first among the machine's others, so that their load neither starves the cruncher nor
# feeds the loop thread the CPU its hog should take. Inside the group, nice still decides.
try:
    with open("/proc/self/autogroup", "w") as autogroup:
        autogroup.write("-20")
except OSError:
    pass
backend = sys.argv[1]
anyio.run(main, backend="trio" if backend == "trio" else "asyncio",
          backend_options={"use_uvloop": True} if backend == "uvloop" else {})
"""


@pytest.mark.skipif(
    not (sys.platform == "linux" and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2),
    reason="needs Linux's per-thread scheduler statistics and two CPUs",
)
@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
def test_a_starved_loop_is_told_apart_from_a_blocked_one(backend: str, tmp_path: Path) -> None:
    """A loop thread made to wait for a CPU (pinned with a busier process) is starved; a time.sleep is a block.

    Real starvation, in a child process: its loop thread is pinned to one CPU
    with nice 19, next to a busy-looping process at nice 0 on the same CPU,
    while 50 tasks yield to each other. Its watchdog thread stays free to run
    on the other CPUs. Then, the hog gone, the loop sleeps 0.5 s. Before all
    that, a coroutine runs a pure-Python loop for 0.5 s of CPU: a block too,
    with the loop thread running on a CPU most of the time.
    """
    (tmp_path / "starve.py").write_text(STARVE)
    result = subprocess.run(
        [sys.executable, str(tmp_path / "starve.py"), backend],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        start_new_session=True,  # a scheduling group of its own, where the kernel groups by session
    )
    assert result.returncode == 0, result.stderr
    starved, blocked, crunched = json.loads(result.stdout)
    [(cause, duration, cpu_wait, cpu_time, function)] = crunched
    assert (cause, function) == ("blocked", "cruncher"), crunched
    assert duration >= 0.45
    assert cpu_time >= duration / 2
    assert cpu_wait < duration / 2
    assert starved, "a loop thread given about 1.5 % of a CPU for 1.5 s was never late"
    for cause, duration, cpu_wait, cpu_time, _ in starved:
        assert cause == "starved", starved
        assert cpu_wait >= duration / 2, starved
        assert cpu_time < duration / 4, starved
    [(cause, duration, cpu_wait, cpu_time, function)] = blocked
    assert (cause, function) == ("blocked", "sleeper")
    assert 0.4 <= duration <= 0.7
    assert cpu_wait < duration / 4
    assert cpu_time < duration / 4


async def test_a_sleep_block_measures_how_little_the_loop_thread_ran() -> None:
    """A time.sleep block is 'blocked', not starved: the loop thread neither ran nor waited for a CPU."""
    async with BlockingDetector(THRESHOLD) as detector:
        await anyio.lowlevel.checkpoint()
        time.sleep(BLOCK)
        await detector.checkpoint()
    [event] = detector.events
    assert event.cause == "blocked"
    assert not event.starved
    assert event.gil_holders == ()
    if _schedstat_available():
        assert event.cpu_time is not None
        assert event.cpu_wait is not None
        assert event.cpu_time < BLOCK / 4
        assert event.cpu_wait < BLOCK / 2
    else:
        assert event.cpu_time is None
        assert event.cpu_wait is None


def _schedstat_available() -> bool:
    return os.path.exists(f"/proc/self/task/{threading.get_native_id()}/schedstat")


class _ScriptedClock:
    """What /proc would say of a thread, scripted: see asyncbridge._thread_clock.Reading."""

    def __init__(self, *readings: tuple[float, int, int, float, int]) -> None:
        self.readings = list(readings)

    def read(self) -> tuple[float, int, int, float, int]:
        return self.readings.pop(0)


def _classified(
    loop_ran: float, loop_waited: float, others_ran: float, *, asleep_when_sampled: bool, io_wait_over: bool = False
) -> BlockingEvent | None:
    """The event the watchdog records for a 1 s block with these per-thread CPU figures (seconds), if any."""
    from asyncbridge import _detector_session

    detector = BlockingDetector(THRESHOLD)
    settings = DetectorSettings(detector.threshold, detector.heartbeat_interval, strict=False, strict_rules=1, allow=())
    events: list[BlockingEvent] = []
    session = DetectorSession(settings, events.append, lambda frames: None)
    start = time.monotonic()
    end = start + 1.0
    loop_clock = _ScriptedClock((end, int(loop_ran * 1e9), int(loop_waited * 1e9), 10.0 + loop_ran + others_ran, 9))
    session._clock = loop_clock  # type: ignore[assignment]
    pending = _detector_session._Pending(start - settings.interval / 2, _stack((__file__, 1, "innocent_line")))
    pending.cpu_base = (start, 0, 0, 10.0, 0)
    pending.gil = asleep_when_sampled
    pending.io_wait_over = io_wait_over
    cruncher = _ScriptedClock((end, int(others_ran * 1e9), 0, 0.0, 0))
    pending.others = [("crunch-0", cruncher, 0, _stack((__file__, 2, "crunch")))]  # type: ignore[list-item]
    session._record_block(pending, end)
    return events[0] if events else None


def test_a_loop_asleep_while_other_threads_ran_is_a_gil_wait_naming_them() -> None:
    """The watchdog's classification, from the kernel's per-thread figures: the loop thread slept (on the GIL)
    through the block while another thread ran Python code, so the event names that thread, not the loop's line.
    """
    event = _classified(loop_ran=0.01, loop_waited=0.001, others_ran=0.9, asleep_when_sampled=True)
    assert event is not None
    assert event.cause == "gil"
    assert [name for name, _ in event.gil_holders] == ["crunch-0"]
    text = event.format()
    assert text.startswith(f"event loop waited {event.duration:.3f} s for the GIL")
    assert "Thread 'crunch-0'" in text
    assert "at crunch (" in text


def test_a_loop_that_ran_or_waited_for_a_cpu_is_no_gil_wait() -> None:
    """Running the block itself is a block; waiting for a CPU is starvation; either way no GIL holders are named."""
    ran = _classified(loop_ran=0.9, loop_waited=0.01, others_ran=0.9, asleep_when_sampled=True)
    assert ran is not None
    assert ran.cause == "blocked"
    assert ran.gil_holders == ()
    starved = _classified(loop_ran=0.01, loop_waited=0.8, others_ran=0.9, asleep_when_sampled=True)
    assert starved is not None
    assert starved.cause == "starved"
    awake = _classified(loop_ran=0.01, loop_waited=0.001, others_ran=0.9, asleep_when_sampled=False)
    assert awake is not None
    assert awake.cause == "blocked"  # not seen asleep on a lock mid-block: no evidence of a GIL wait
    idle_others = _classified(loop_ran=0.01, loop_waited=0.001, others_ran=0.0, asleep_when_sampled=True)
    assert idle_others is not None
    assert idle_others.cause == "blocked"  # a lock held by a thread that did not run: the loop's own wait


def test_a_late_beat_in_the_loops_wait_for_io_is_a_gil_wait_or_nothing() -> None:
    """Seen in its own wait for I/O, that wait over and asleep on a futex: a GIL wait if other threads were busy.

    Otherwise the loop was idle, and nothing is reported (as for any idle loop): never a block at the wait.
    """
    gil = _classified(loop_ran=0.01, loop_waited=0.001, others_ran=0.9, asleep_when_sampled=True, io_wait_over=True)
    assert gil is not None
    assert gil.cause == "gil"
    for others_ran, asleep in ((0.0, True), (0.9, False)):
        assert _classified(0.01, 0.001, others_ran, asleep_when_sampled=asleep, io_wait_over=True) is None


def test_a_beat_stored_late_without_a_gap_does_not_stall_the_watchdog() -> None:
    """The heartbeat, preempted between taking the time and storing it, stores a beat the watchdog judged late.

    No gap is noted for it (the time was taken before the beat was overdue). The
    watchdog must let that late beat go, and still measure the next block.
    """
    events: list[BlockingEvent] = []
    settings = DetectorSettings(threshold=0.05, interval=0.0125, strict=False, strict_rules=1, allow=())
    session = DetectorSession(settings, events.append, lambda frames: None)  # this thread plays the loop
    session.start(None)
    try:
        time.sleep(0.15)  # the watchdog sees the beat late, and samples this thread
        session.beat = time.monotonic()  # the preempted heartbeat's store: no gap
        time.sleep(0.02)
        session.tick()  # an on-time beat
        time.sleep(0.3)  # a real block
        session.tick()  # its end
        time.sleep(0.05)
    finally:
        session.stop()
        session.join()
    assert len(events) == 1
    assert 0.25 <= events[0].duration <= 0.36, events[0].duration


# -- the await chain ------------------------------------------------------------------------------


async def inner() -> None:
    time.sleep(BLOCK)  # the block, three awaits down


async def middle() -> None:
    await inner()


async def outer() -> None:
    await middle()


AWAIT_LINES = {fn.__name__: lines_of(fn, "time.sleep") | lines_of(fn, "await ") for fn in (outer, middle, inner)}


def assert_ends_with_outer_middle_inner(event: BlockingEvent) -> list[str]:
    """The event's await chain ends with outer, middle, inner, each at its await (or blocking) line; its names."""
    names = [frame.name for frame in event.await_chain]
    assert names[-3:] == ["outer", "middle", "inner"], names
    for frame in event.await_chain[-3:]:
        assert frame.filename == __file__
        assert frame.lineno in AWAIT_LINES[frame.name], frame
        assert frame.line  # the source line, read in the watchdog thread
    return names


async def test_the_await_chain_of_the_blocked_task_lists_its_coroutines_outermost_first(
    anyio_backend_name: str,
) -> None:
    """A task running outer(), awaiting middle(), awaiting inner(), which blocks: the chain is outer, middle, inner.

    On trio the tasks whose nurseries the task runs in come first: this test's own coroutine among them.
    """
    from asyncbridge._watch_report import event_dict

    async def attempt() -> None:
        async with BlockingDetector(THRESHOLD) as detector, anyio.create_task_group() as group:
            group.start_soon(outer)
        [event] = detector.events
        names = assert_ends_with_outer_middle_inner(event)
        this_test = "test_the_await_chain_of_the_blocked_task_lists_its_coroutines_outermost_first"
        if anyio_backend_name == "trio":
            assert "attempt" in names[:-3], names  # the task that opened the nursery, awaiting its children
        assert this_test not in names[-3:]
        text = event.format()
        chain = text[text.index("Await chain (outermost first):") :]
        shown = [line.split(" (")[0].strip() for line in chain.splitlines()[1:]]
        assert shown[-3:] == ["outer", "middle", "inner"], chain
        assert [frame["function"] for frame in event_dict(event)["await_chain"]] == names

    await on_a_quiet_try(attempt)


async def test_the_await_chain_starts_with_a_task_awaiting_the_blocked_one(anyio_backend_name: str) -> None:
    """asyncio (before Python 3.14): a task that awaits the blocked task directly comes first (from its callbacks)."""
    if anyio_backend_name == "trio":
        pytest.skip("asyncio tasks awaiting asyncio tasks; trio's nurseries are the test above")
    import asyncio

    async def parent() -> None:
        await asyncio.create_task(outer())

    async def attempt() -> None:
        async with BlockingDetector(THRESHOLD) as detector:
            await asyncio.create_task(parent())
        [event] = detector.events
        names = assert_ends_with_outer_middle_inner(event)
        assert names[:-3][-1:] == ["parent"], names  # then the test's own task, awaiting parent's task
        assert "attempt" in names[:-4], names

    await on_a_quiet_try(attempt)


def test_the_await_chain_comes_from_capture_call_graph_where_python_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.14+'s asyncio.capture_call_graph gives the awaiting tasks (simulated here: it is not installed).

    Its graph of the blocked task (read from the watchdog thread) lists the
    tasks awaiting it in ``awaited_by``, each with its frames innermost first:
    they come first in the chain, outermost first, before the running coroutines.
    """
    import asyncio
    from types import SimpleNamespace

    def awaiting_outer() -> Any:
        yield

    def awaiting_inner() -> Any:
        yield

    suspended = [awaiting_outer(), awaiting_inner()]
    for generator in suspended:
        next(generator)
    asked: list[object] = []

    def capture_call_graph(future: object) -> SimpleNamespace:
        asked.append(future)
        call_stack = tuple(SimpleNamespace(frame=g.gi_frame) for g in reversed(suspended))  # innermost first
        awaiter = SimpleNamespace(future=None, call_stack=call_stack, awaited_by=())
        return SimpleNamespace(future=future, call_stack=(), awaited_by=(awaiter,))

    monkeypatch.setattr(asyncio, "capture_call_graph", capture_call_graph, raising=False)

    async def main() -> tuple[list[BlockingEvent], object]:
        async with BlockingDetector(THRESHOLD) as detector:
            task = asyncio.create_task(outer())
            await task
        return detector.events, task

    def attempt() -> None:
        asked.clear()
        events, task = asyncio.run(main())
        [event] = events
        names = assert_ends_with_outer_middle_inner(event)
        assert names == ["awaiting_outer", "awaiting_inner", "outer", "middle", "inner"]
        assert task in asked

    on_a_quiet_try_sync(attempt)


async def test_a_block_in_a_plain_callback_has_no_await_chain(anyio_backend_name: str) -> None:
    """asyncio: a block in a plain loop callback (no task, no coroutine) has no await chain, and shows none."""
    if anyio_backend_name == "trio":
        pytest.skip("trio runs run_sync_soon callbacks in a system task of its own: there is no plain callback")
    import asyncio

    done = anyio.Event()

    def block() -> None:
        nap(BLOCK)
        done.set()

    async with BlockingDetector(THRESHOLD) as detector:
        asyncio.get_running_loop().call_soon(block)
        await done.wait()
    [event] = detector.events
    assert event.await_chain == ()
    assert "Await chain" not in event.format()
