"""Scenario 6: memory and threads with 10,000 calls pending.

Each sample runs in a fresh interpreter (peak RSS only grows within one
process): it starts ``PENDING`` tasks that each await a function blocking on
a ``threading.Event``, waits until all 40 threads are busy and the rest are
queued, then reads the RSS and the number of OS threads (psutil), releases the
gate and lets everything finish. Reported: RSS growth from just before the
tasks started to that moment, the process's peak RSS, and the threads alive.
Every child imports the same modules, so the baselines are alike.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from _harness import (
    Backend,
    Candidate,
    Config,
    Sample,
    Section,
    Table,
    child_main,
    measure,
    run_child,
    run_loop,
)
from _offload import (
    AB_ASYNC_WRAP,
    ANYIO,
    ASYNCIO_TO_THREAD,
    RAW,
    THREADS,
    TRIO_TO_THREAD,
    import_everything,
    ways,
)

NAME = "memory"
TITLE = "6. Memory and threads with 10,000 pending calls"

PENDING = 10_000
SELECTED: dict[str, list[str]] = {
    "asyncio": [AB_ASYNC_WRAP, ASYNCIO_TO_THREAD, ANYIO, RAW],
    "trio": [AB_ASYNC_WRAP, TRIO_TO_THREAD, ANYIO],
}


def child(backend: str, way_name: str, pending: str) -> Sample:
    """In the fresh interpreter: hold ``pending`` calls, measure, release."""
    import psutil

    import_everything()
    n = int(pending)
    be: Backend = backend  # type: ignore[assignment]
    way = next(w for w in ways() if w.name == way_name)
    proc = psutil.Process()
    gate = threading.Event()
    lock = threading.Lock()
    entered = 0

    def blocked() -> None:
        nonlocal entered
        with lock:
            entered += 1
        gate.wait()

    async def main() -> Sample:
        if be == "trio":
            import trio

            sleep = trio.sleep
        else:
            import asyncio

            sleep = asyncio.sleep
        async with way.prepare(blocked) as call:
            gc.collect()
            rss0 = proc.memory_info().rss
            threads0 = proc.num_threads()
            out: Sample = {}

            async def hold() -> None:
                deadline = time.monotonic() + 30
                while entered < THREADS and time.monotonic() < deadline:
                    await sleep(0.005)
                await sleep(0.1)  # let every task reach its queue or limiter
                out["rss_growth_mb"] = (proc.memory_info().rss - rss0) / 2**20
                out["threads"] = proc.num_threads()
                out["threads_before"] = threads0
                out["running"] = entered
                gate.set()

            await _gather_with(be, call, n, hold)
            out["peak_rss_mb"] = _peak_rss() / 2**20
            return out

    return run_loop(be, main)


def _peak_rss() -> float:
    """This process's peak RSS in bytes.

    ``VmHWM`` (Linux), not ``ru_maxrss``: the latter survives fork and exec,
    so a child would report its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0


async def _gather_with(backend: Backend, call: Callable[[], object], n: int, hold: Callable[[], object]) -> None:
    if backend == "trio":
        import trio

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(call)  # type: ignore[arg-type]
            nursery.start_soon(hold)  # type: ignore[arg-type]
        return
    import asyncio

    async def one() -> None:
        await call()  # type: ignore[misc]

    await asyncio.gather(*[one() for _ in range(n)], hold())  # type: ignore[arg-type]


def _sampler(backend: Backend, way_name: str, n: int) -> Callable[[], Sample]:
    return lambda: run_child(Path(__file__), backend, way_name, str(n))


def run(cfg: Config) -> Section:
    n = cfg.size(PENDING, 3_000)
    rounds = cfg.rounds_or(3)
    section = Section(
        NAME,
        TITLE,
        intro=(
            f"{n:,} tasks each await a function that blocks on a `threading.Event`; with {THREADS} "
            f"threads busy and the rest queued, the child process reports its RSS growth since just "
            f"before the tasks started, its peak RSS, and the OS threads alive (main thread "
            f"included). One fresh interpreter per sample, {rounds} rounds."
        ),
    )
    by_name = {w.name: w for w in ways()}
    for backend in cfg.backends:
        if backend not in SELECTED:
            continue  # uvloop keeps the same per-call bookkeeping as asyncio
        selected = [by_name[name] for name in SELECTED[backend]]
        rows = measure(
            f"memory/{backend}",
            [Candidate(w.name, _sampler(backend, w.name, n), w.note) for w in selected],
            rounds,
            cfg.progress,
            show="rss_growth_mb",
        )
        base = (TRIO_TO_THREAD if backend == "trio" else ASYNCIO_TO_THREAD,)
        section.tables += [
            Table(f"RSS growth with {n:,} pending calls on {backend}", rows, "rss_growth_mb", "MB", "lower", base),
            Table(f"Peak RSS on {backend}", rows, "peak_rss_mb", "MB", "lower", base),
            Table(
                f"Threads alive with {n:,} pending calls on {backend}", rows, "threads", "threads", "lower", digits=0
            ),
        ]
    return section


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    child_main(sys.argv[2:], child)
