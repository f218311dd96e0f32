"""``python -m asyncbridge demo``: what asyncbridge is for, shown live in about 15 seconds.

Each scene runs the same work two or three ways on one asyncio event loop
while a ticker task measures how late the loop answers (its worst lag), then
prints a table of timings and a text timeline of which thread or process ran
what.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ._processes import ProcessExecutor
from ._threads import ThreadExecutor
from ._wrap import async_wrap

WIDTH = 56  # characters of timeline


@dataclass
class Span:
    worker: str
    label: str
    start: float
    end: float


@dataclass
class Run:
    name: str
    wall: float
    lag: float
    spans: list[Span] = field(default_factory=list[Span])


_demo_pid: int | None = None  # set in the demo's own process; None in worker processes


def _worker_name() -> str:
    if os.getpid() != _demo_pid:
        return f"process pid {os.getpid()}"
    thread = threading.current_thread()
    if thread is threading.main_thread():
        return "event loop thread"
    return f"thread {thread.name}"


def _peak_overlap(spans: list[Span]) -> int:
    edges = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans])
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def blocking_io(label: str, seconds: float) -> Span:
    """A blocking call, such as a sync database driver or requests.get."""
    start = time.perf_counter()
    time.sleep(seconds)
    return Span(_worker_name(), label, start, time.perf_counter())


def cpu_work(label: str, n: int) -> Span:
    """Pure-Python CPU work: sums of squares, no I/O, holds the GIL."""
    start = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i % 7
    return Span(_worker_name(), label, start, time.perf_counter())


async def _measure(name: str, body: Callable[[], Awaitable[list[Span]]]) -> Run:
    lag = 0.0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal lag
        while not stop.is_set():
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lag = max(lag, time.perf_counter() - before - 0.01)

    tick = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.02)
    start = time.perf_counter()
    spans = await body()
    wall = time.perf_counter() - start
    stop.set()
    await tick
    return Run(name, wall, lag, spans)


def _timeline(runs: list[Run]) -> str:
    lines: list[str] = []
    for run in runs:
        if not run.spans:
            continue
        origin = min(s.start for s in run.spans)
        end = max(s.end for s in run.spans)
        scale = WIDTH / max(end - origin, 1e-9)
        lines.append(f"  {run.name}  ({end - origin:.2f} s across)")
        workers = sorted({s.worker for s in run.spans})
        for worker in workers:
            row = [" "] * WIDTH
            for span in (s for s in run.spans if s.worker == worker):
                a = min(WIDTH - 1, int((span.start - origin) * scale))
                b = max(a + 1, min(WIDTH, int((span.end - origin) * scale)))
                mark = span.label[-1]
                for i in range(a, b):
                    row[i] = mark
            lines.append(f"    {worker[:30]:<30} |{''.join(row)}|")
    return "\n".join(lines)


def _table(title: str, runs: list[Run], note: str) -> str:
    out = [f"\n== {title}", f"   {note}", "", f"  {'how':<44} {'wall time':>9} {'loop stalled':>13}"]
    for run in runs:
        out.append(f"  {run.name:<44} {run.wall:>8.2f}s {run.lag * 1000:>11.0f}ms")
    out.append("")
    out.append(_timeline(runs))
    return "\n".join(out)


def _calibrate(target: float) -> int:
    """How many loop iterations of cpu_work take about ``target`` seconds here."""
    n = 200_000
    while True:
        span = cpu_work("x", n)
        took = span.end - span.start
        if took > 0.05:
            return max(1, int(n * target / took))
        n *= 4


async def _scenes(quick: bool) -> None:
    io_seconds = 0.3 if quick else 1.0

    # Scene 1: blocking I/O inside a coroutine, then through async_wrap.
    async def inline_io() -> list[Span]:
        return [blocking_io(f"call {c}", io_seconds) for c in "abc"]

    wrapped_io = async_wrap(blocking_io)

    async def gathered_io() -> list[Span]:
        return list(await asyncio.gather(*(wrapped_io(f"call {c}", io_seconds) for c in "abc")))

    runs = [
        await _measure("3 blocking calls made directly in a coroutine", inline_io),
        await _measure("the same 3 through @async_wrap, gathered", gathered_io),
    ]
    print(
        _table(
            f"Blocking I/O: three {io_seconds:g}-second blocking calls",
            runs,
            "Called in a coroutine they run one after another and freeze the loop; "
            "through async_wrap they overlap in threads.",
        ),
        flush=True,
    )

    # Scene 2: a bound. 17 calls, 2 threads.
    async with ThreadExecutor(2, name="pool") as executor:
        bounded = async_wrap(executor=executor)(blocking_io)

        async def seventeen() -> list[Span]:
            return list(await asyncio.gather(*(bounded(f"call {chr(97 + i)}", 0.1) for i in range(17))))

        run = await _measure("17 calls on ThreadExecutor(max_workers=2)", seventeen)
        threads = {s.worker for s in run.spans}
        print(
            _table(
                "A bounded executor: 17 calls of 0.1 s on 2 threads",
                [run],
                f"They queue for the threads: {len(threads)} distinct threads ran them, "
                f"at most {_peak_overlap(run.spans)} at a time.",
            ),
            flush=True,
        )

    # Scene 3: CPU-bound work: inline, threads, processes.
    n = _calibrate(0.25 if quick else 0.6)
    wrapped_cpu = async_wrap(cpu_work)

    async def inline_cpu() -> list[Span]:
        return [cpu_work(f"job {c}", n) for c in "ab"]

    async def threaded_cpu() -> list[Span]:
        return list(await asyncio.gather(wrapped_cpu("job a", n), wrapped_cpu("job b", n)))

    runs = [
        await _measure("2 CPU-bound jobs run in a coroutine", inline_cpu),
        await _measure("the same 2 in threads (@async_wrap)", threaded_cpu),
    ]
    note = "In a coroutine CPU work stalls the loop; threads keep the loop answering but share one core (the GIL)."
    async with ProcessExecutor(2) as processes:
        # Start both workers first: the row shows the work, not process start-up.
        await asyncio.gather(processes.run(time.sleep, 0.05), processes.run(time.sleep, 0.05))
        in_processes = async_wrap(executor=processes)(cpu_work)

        async def processed_cpu() -> list[Span]:
            return list(await asyncio.gather(in_processes("job a", n), in_processes("job b", n)))

        runs.append(await _measure("the same 2 in processes (ProcessExecutor(2))", processed_cpu))
    note += " Processes run them in parallel on both cores."
    print(_table("CPU-bound work: two pure-Python loops", runs, note), flush=True)


def main(argv: list[str]) -> int:
    """Run the demo; ``--quick`` shortens every scene (for tests)."""
    quick = "--quick" in argv
    unknown = [a for a in argv if a != "--quick"]
    if unknown:
        print(f"asyncbridge demo: unexpected arguments {unknown}; the only option is --quick")
        return 2
    print(
        "asyncbridge demo: the same work run several ways on one asyncio event loop.\n"
        "'loop stalled' is the worst delay a 10 ms ticker task saw: how long the app could not answer.",
        flush=True,
    )
    global _demo_pid
    _demo_pid = os.getpid()
    started = time.perf_counter()
    asyncio.run(_scenes(quick))
    print(f"\nDone in {time.perf_counter() - started:.1f} s.")
    return 0
