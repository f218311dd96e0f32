"""Scenario 4: what a blocking-call detector costs, and what it catches.

Overhead: a loop-heavy workload on asyncio, run with each detector active
and without any: ``TASKS`` tasks that each yield ``YIELDS`` times, alongside
``CLIENTS`` clients that each send ``MESSAGES`` small messages to an echo
server and read them back, all over 127.0.0.1 with a port the OS picks. The
workload is bounded in count (and each sample by a timeout), so it always
stops by itself. Overhead is the wall time over the undetected run's.

Catching: a coroutine calls ``time.sleep(0.2)``, another runs a 0.2 s CPU
loop; does the tool report it (a raised error, a callback, a log record)?

The detectors: blockbuster (patches blocking functions), aiodebug's
``log_slow_callbacks`` (times every ``Handle._run``), asyncio's debug mode
(``slow_callback_duration`` at 0.1 s) and asyncbridge's ``BlockingDetector``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from _harness import Backend, Candidate, Check, Config, NotAvailable, Sample, Section, Table, measure, run_loop
from _work import calibrate, spin

NAME = "detector"
TITLE = "4. Blocking-call detectors: overhead and what they catch"

TASKS = 300
YIELDS = 100
CLIENTS = 10
MESSAGES = 150
PAYLOAD = b"x" * 64
THRESHOLD = 0.1  # seconds: asyncio's slow_callback_duration, the shared default
TIMEOUT = 60.0


# -- the workload ---------------------------------------------------------------


async def workload(tasks: int, messages: int) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(4096):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def client(port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(messages):
            writer.write(PAYLOAD)
            await writer.drain()
            await reader.readexactly(len(PAYLOAD))
        writer.close()
        await writer.wait_closed()

    async def yielder() -> None:
        for _ in range(YIELDS):
            await asyncio.sleep(0)

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await asyncio.wait_for(
            asyncio.gather(*[yielder() for _ in range(tasks)], *[client(port) for _ in range(CLIENTS)]),
            TIMEOUT,
        )


async def trio_workload(tasks: int, messages: int) -> None:
    """The same workload written for trio: yielding tasks and echo clients over 127.0.0.1."""
    import trio

    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            async for data in stream:
                await stream.send_all(data)

    async def client(port: int) -> None:
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            for _ in range(messages):
                await stream.send_all(PAYLOAD)
                got = 0
                while got < len(PAYLOAD):
                    got += len(await stream.receive_some(len(PAYLOAD) - got))

    async def yielder() -> None:
        for _ in range(YIELDS):
            await trio.lowlevel.checkpoint()  # what asyncio.sleep(0) is on asyncio

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as server:
            listeners = await server.start(trio.serve_tcp, echo, 0)  # type: ignore[arg-type]
            port = listeners[0].socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                for _ in range(tasks):
                    nursery.start_soon(yielder)
                for _ in range(CLIENTS):
                    nursery.start_soon(client, port)
            server.cancel_scope.cancel()


# -- the detectors ----------------------------------------------------------------
# Each is a context manager entered inside the running loop; it yields a list
# that collects what it reported.


@dataclass(frozen=True)
class Detector:
    name: str
    active: Callable[[], Any]  # () -> async context manager yielding list[str]
    note: str = ""


@contextlib.asynccontextmanager
async def _none() -> AsyncIterator[list[str]]:
    yield []


@contextlib.asynccontextmanager
async def _blockbuster() -> AsyncIterator[list[str]]:
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx():
        yield []  # it reports by raising BlockingError in the blocking call


@contextlib.asynccontextmanager
async def _aiodebug() -> AsyncIterator[list[str]]:
    from aiodebug import log_slow_callbacks

    found: list[str] = []
    original = asyncio.events.Handle._run  # aiodebug has no disable(): restore by hand
    log_slow_callbacks.enable(THRESHOLD, on_slow_callback=lambda name, seconds: found.append(name))
    try:
        yield found
    finally:
        asyncio.events.Handle._run = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _capture(logger_name: str) -> Iterator[list[str]]:
    found: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.append(record.getMessage())

    logger = logging.getLogger(logger_name)
    handler = Collect(logging.WARNING)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


@contextlib.asynccontextmanager
async def _debug_mode() -> AsyncIterator[list[str]]:
    loop = asyncio.get_running_loop()
    loop.slow_callback_duration = THRESHOLD
    with _capture("asyncio") as found:
        loop.set_debug(True)
        try:
            yield found
        finally:
            loop.set_debug(False)


@contextlib.asynccontextmanager
async def _asyncbridge() -> AsyncIterator[list[str]]:
    found: list[Any] = []
    try:
        from asyncbridge import BlockingDetector

        detector = BlockingDetector(threshold=THRESHOLD, on_block=found.append)
    except (ImportError, NotImplementedError) as exc:
        raise NotAvailable(f"not yet available ({type(exc).__name__}: {exc})") from exc
    async with detector:
        yield found


NONE = "no detector"
AB = "asyncbridge BlockingDetector"
DETECTORS = [
    Detector(NONE, _none),
    Detector(AB, _asyncbridge),
    Detector("blockbuster", _blockbuster, "patches blocking functions"),
    Detector("aiodebug log_slow_callbacks", _aiodebug, f"times every callback; threshold {THRESHOLD} s"),
]
# Debug mode costs 10-25 times the workload: measured in a table of its own,
# against the undetected run, with fewer rounds.
DEBUG_MODE = Detector("asyncio debug mode", _debug_mode, f"slow_callback_duration {THRESHOLD} s")


def overhead_sample(detector: Detector, tasks: int, messages: int, backend: Backend = "asyncio") -> Sample:
    run_workload = trio_workload if backend == "trio" else workload

    async def main() -> float:
        async with detector.active():
            start = time.perf_counter()
            await run_workload(tasks, messages)
            return time.perf_counter() - start

    return {"ms": 1000 * run_loop(backend, main)}


def catches(detector: Detector, blocker: Callable[[], None]) -> str:
    """Run ``blocker`` inside a coroutine with the detector on; say whether it was reported."""

    async def main() -> str:
        async def culprit() -> None:
            blocker()

        async with detector.active() as found:
            try:
                await asyncio.create_task(culprit())
                await asyncio.sleep(THRESHOLD)  # let a watchdog thread report
            except Exception as exc:  # blockbuster raises BlockingError in the call itself
                return f"yes (raises {type(exc).__name__})"
        return "yes" if found else "no"  # read after exit: every report is in by then

    try:
        return run_loop("asyncio", main)
    except NotAvailable as exc:
        return str(exc)


def run(cfg: Config) -> Section:
    rounds = cfg.rounds_or(15)
    debug_rounds = cfg.rounds_or(3)
    tasks = cfg.size(TASKS, 50)
    messages = cfg.size(MESSAGES, 30)
    section = Section(
        NAME,
        TITLE,
        intro=(
            f"Workload on asyncio: {tasks} tasks x {YIELDS} `await asyncio.sleep(0)`, alongside "
            f"{CLIENTS} clients x {messages} round trips of {len(PAYLOAD)} bytes to an echo server on "
            f"127.0.0.1; wall time per run, {rounds} rounds ({debug_rounds} for debug mode), a fresh loop "
            f"each. On uvloop and trio, where only asyncbridge's detector runs, it is measured against no "
            f"detector on the same workload (for trio, written with trio's streams). Detection: a "
            f"coroutine calls `time.sleep(0.2)`, another runs a 0.2 s CPU loop."
        ),
    )
    if "asyncio" not in cfg.backends:
        section.intro += " (Skipped: its comparison with the peers runs on asyncio.)"
        return section
    overhead_sample(DETECTORS[0], tasks, messages)  # warm-up: imports, first connections
    rows = measure(
        "detector/overhead",
        [Candidate(d.name, _overhead(d, tasks, messages), d.note) for d in DETECTORS],
        rounds,
        cfg.progress,
        show="ms",
    )
    table = Table("Wall time of the loop-heavy workload", rows, "ms", "ms", "lower", (NONE,))
    debug_rows = measure(
        "detector/debug-mode",
        [Candidate(d.name, _overhead(d, tasks, messages), d.note) for d in (DETECTORS[0], DEBUG_MODE)],
        debug_rounds,
        cfg.progress,
        show="ms",
    )
    debug_table = Table("The same workload under asyncio debug mode", debug_rows, "ms", "ms", "lower", (NONE,))
    section.tables += [table, debug_table]
    # The other loops: only asyncbridge's detector runs there (blockbuster and
    # aiodebug hook asyncio's own machinery), so it is measured alone.
    for backend in ("uvloop", "trio"):
        if backend not in cfg.backends:
            continue
        what = "the same workload written for trio" if backend == "trio" else "the same workload"
        other = measure(
            f"detector/overhead/{backend}",
            [Candidate(d.name, _overhead(d, tasks, messages, backend), d.note) for d in DETECTORS[:2]],
            rounds,
            cfg.progress,
            show="ms",
        )
        other_table = Table(f"Wall time on {backend} ({what})", other, "ms", "ms", "lower", (NONE,))
        section.tables.append(other_table)
        r = other_table.ratio(AB, NONE)
        section.checks.append(
            Check(
                f"detector overhead ≤ 2% on {backend} (informative; the issue's target is asyncio)",
                "not measured" if r is None else f"{(r - 1) * 100:+.1f}%",
                None if r is None else r <= 1.02,
            )
        )

    iterations = calibrate(0.2)
    lines = ["### Which tools catch a blocking call in a coroutine", ""]
    lines += ["| detector | `time.sleep(0.2)` | 0.2 s CPU loop |", "|---|---|---|"]
    caught: dict[str, tuple[str, str]] = {}
    for d in [*DETECTORS[1:], DEBUG_MODE]:
        sleep = catches(d, lambda: time.sleep(0.2))
        cpu = catches(d, lambda: spin(iterations) and None)
        caught[d.name] = (sleep, cpu)
        lines.append(f"| {d.name} | {sleep} | {cpu} |")
    section.markdown.append("\n".join(lines) + "\n")

    r = table.ratio(AB, NONE)
    ours_cpu = caught.get(AB, ("", ""))[1]
    if r is None:
        measured = next((row.unavailable for row in rows if row.name == AB), None) or "not measured"
        section.checks.append(Check("detector overhead ≤ 2% and catches CPU loops", measured, None))
    else:
        section.checks.append(
            Check(
                "detector overhead ≤ 2% and catches CPU loops",
                f"{(r - 1) * 100:+.1f}%, CPU loop: {ours_cpu}",
                r <= 1.02 and ours_cpu.startswith("yes"),
            )
        )
    return section


def _overhead(detector: Detector, tasks: int, messages: int, backend: Backend = "asyncio") -> Callable[[], Sample]:
    return lambda: overhead_sample(detector, tasks, messages, backend)
