"""Scenario 3: process offload, awaited from asyncio.

Three measurements per process pool, all with 2 workers (this machine's CPU
count, anyio's default):

- cold start: a fresh interpreter (modules already imported) creates the pool
  and awaits one trivial call; milliseconds from creating the pool to the
  result. One child process per sample.
- warm call: in this process, after 20 warm-up calls, the mean of
  ``WARM_CALLS`` sequential awaits of a trivial call.
- CPU speedup: 8 concurrent calls of a pure-Python loop calibrated to about
  0.2 s; speedup = 8 x (one call's time in this process) / wall time.

The pools: ``ProcessPoolExecutor`` with each start method (``fork`` is the
Linux default before Python 3.14 and is unsafe in a program with threads;
``forkserver`` and ``spawn`` are safe), loky's reusable executor, pebble's
``ProcessPool`` (which forks), ``anyio.to_process.run_sync``, and asyncbridge's
``ProcessExecutor`` and ``to_process`` (fresh interpreters, no fork). Stdlib, loky and pebble futures are awaited through
``run_in_executor`` / ``asyncio.wrap_future``, as an asyncio user would.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _harness import (
    CAN_PIN,
    Candidate,
    Check,
    Config,
    NotAvailable,
    Sample,
    Section,
    Table,
    child_main,
    measure,
    pin_to_one_cpu,
    ratio_check,
    run_child,
    run_loop,
    unavailable_if_missing,
)
from _work import calibrate, echo, spin

NAME = "process"
TITLE = "3. Process offload"

WORKERS = 2
WARM_CALLS = 300
CPU_CALLS = 8
CPU_SECONDS = 0.2

Run = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class Pool:
    name: str
    open: Callable[[], Any]  # an async context manager factory yielding Run
    note: str = ""
    ours: bool = False


def _stdlib(method: str) -> Callable[[], Any]:
    @asynccontextmanager
    async def open_pool() -> AsyncIterator[Run]:
        loop = asyncio.get_running_loop()
        pool = ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context(method))
        try:
            yield functools.partial(loop.run_in_executor, pool)
        finally:
            pool.shutdown(wait=True)

    return open_pool


@asynccontextmanager
async def _loky() -> AsyncIterator[Run]:
    import loky

    loop = asyncio.get_running_loop()
    # The reusable executor is loky's documented entry point; it outlives the
    # loop (it is per process), so warm samples reuse its workers, as apps do.
    pool = loky.get_reusable_executor(max_workers=WORKERS)
    yield functools.partial(loop.run_in_executor, pool)


@asynccontextmanager
async def _pebble() -> AsyncIterator[Run]:
    import pebble

    pool = pebble.ProcessPool(max_workers=WORKERS)

    async def run(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.wrap_future(pool.schedule(fn, args=args))

    try:
        yield run
    finally:
        pool.close()
        pool.join()


@asynccontextmanager
async def _anyio() -> AsyncIterator[Run]:
    import anyio.to_process

    yield anyio.to_process.run_sync


@asynccontextmanager
async def _ab_executor() -> AsyncIterator[Run]:
    try:
        from asyncbridge import ProcessExecutor

        executor: Any = ProcessExecutor(WORKERS)
    except (ImportError, NotImplementedError) as exc:
        raise unavailable_if_missing(exc) from exc
    try:
        yield executor.run
    finally:
        aclose = getattr(executor, "aclose", None)
        if aclose is not None:
            await aclose()
        else:
            executor.shutdown(wait=True)


@asynccontextmanager
async def _ab_to_process() -> AsyncIterator[Run]:
    try:
        from asyncbridge import to_process
    except ImportError as exc:
        raise unavailable_if_missing(exc) from exc
    yield to_process


AB_EXECUTOR = "asyncbridge ProcessExecutor(2).run"
AB_TO_PROCESS = "asyncbridge to_process"
FORK = "ProcessPoolExecutor (fork)"
ANYIO = "anyio.to_process.run_sync"

POOLS = [
    Pool(AB_EXECUTOR, _ab_executor, ours=True),
    Pool(AB_TO_PROCESS, _ab_to_process, "default process executor", ours=True),
    Pool(FORK, _stdlib("fork"), "Linux default < 3.14; unsafe with threads"),
    Pool("ProcessPoolExecutor (forkserver)", _stdlib("forkserver")),
    Pool("ProcessPoolExecutor (spawn)", _stdlib("spawn")),
    Pool("loky get_reusable_executor", _loky),
    Pool("pebble ProcessPool", _pebble, "forks: unsafe with threads"),
    Pool(ANYIO, _anyio),
]


def _pool(name: str) -> Pool:
    return next(p for p in POOLS if p.name == name)


# -- samples -----------------------------------------------------------------------


def _import_all_pools() -> None:
    """Import every pool's library before the clock starts: cold start is the pool's, not the import's."""
    import importlib

    for module in ("asyncbridge", "anyio.to_process", "loky", "pebble", "concurrent.futures.process"):
        with suppress(ImportError):
            importlib.import_module(module)


def child(name: str) -> Sample:
    """In a fresh interpreter: time from creating the pool to the first result."""
    pool = _pool(name)
    _import_all_pools()

    async def main() -> float:
        start = time.perf_counter()
        async with pool.open() as run:
            if await run(echo, 1) != 1:
                raise RuntimeError("wrong result")
            took = time.perf_counter() - start
        return took

    return {"cold_ms": 1000 * run_loop("asyncio", main)}


def pinned_warm(name: str, warm_calls: str) -> Sample:
    """In a fresh interpreter pinned to one CPU (its workers inherit it): the warm per-call latency alone."""
    pin_to_one_cpu()
    pool = _pool(name)

    async def main() -> float:
        async with pool.open() as run:
            await asyncio.gather(*[run(echo, i) for i in range(20)])
            start = time.perf_counter()
            for i in range(int(warm_calls)):
                await run(echo, i)
            return (time.perf_counter() - start) / int(warm_calls)

    return {"warm_us": 1e6 * run_loop("asyncio", main)}


def warm_and_cpu(pool: Pool, iterations: int, warm_calls: int) -> Sample:
    async def main() -> Sample:
        async with pool.open() as run:
            await asyncio.gather(*[run(echo, i) for i in range(20)])  # start every worker
            start = time.perf_counter()
            for i in range(warm_calls):
                await run(echo, i)
            warm = (time.perf_counter() - start) / warm_calls
            # This machine's speed drifts by 10-20% over seconds: time the serial
            # reference right before and right after the parallel batch it is
            # compared with, and take the mean.
            before = spin(iterations)
            start = time.perf_counter()
            await asyncio.gather(*[run(spin, iterations) for _ in range(CPU_CALLS)])
            wall = time.perf_counter() - start
            serial = (before + spin(iterations)) / 2
        return {"warm_us": 1e6 * warm, "speedup": CPU_CALLS * serial / wall}

    return run_loop("asyncio", main)


def run(cfg: Config) -> Section:
    rounds = cfg.rounds_or(5)  # the speedup scatters with the machine's load: 3 rounds were too few
    warm_calls = cfg.size(WARM_CALLS, 100)
    iterations = calibrate(CPU_SECONDS)
    section = Section(
        NAME,
        TITLE,
        intro=(
            f"{WORKERS} workers per pool, awaited from asyncio; {rounds} rounds. Cold start: a fresh "
            f"interpreter creates the pool and awaits one trivial call (ms). Warm call: mean of "
            f"{warm_calls} sequential trivial calls after 20 warm-up calls (µs). CPU speedup: "
            f"{CPU_CALLS} concurrent calls of a pure-Python loop calibrated to {CPU_SECONDS} s; speedup = "
            f"{CPU_CALLS} x (one call timed in this process, mean of just before and just after) / wall time "
            f"(ideal {WORKERS:.1f}; it needs both CPUs free, so other load on the machine pulls it down or, "
            "when it comes and goes, scatters it either way)."
        ),
    )
    if "asyncio" not in cfg.backends:
        section.intro += " (Skipped: it runs on asyncio only.)"
        return section

    cold = measure(
        "process/cold",
        [Candidate(p.name, _cold_sampler(p), p.note) for p in POOLS],
        rounds,
        cfg.progress,
        show="cold_ms",
    )
    warm = measure(
        "process/warm+cpu",
        [Candidate(p.name, _warm_sampler(p, iterations, warm_calls), p.note) for p in POOLS],
        rounds,
        cfg.progress,
        show="warm_us",
    )
    cold_table = Table("Cold start to first result", cold, "cold_ms", "ms", "lower", (ANYIO, FORK))
    warm_table = Table("Warm per-call latency", warm, "warm_us", "µs per call", "lower", (FORK, ANYIO))
    cpu_table = Table(
        f"CPU-bound speedup, {CPU_CALLS} x {CPU_SECONDS} s on {WORKERS} workers",
        warm,
        "speedup",
        "times serial",
        "higher",
        (FORK,),
        digits=2,
    )
    section.tables += [cold_table, warm_table, cpu_table]
    if CAN_PIN:
        pinned = measure(
            "process/warm-pinned",
            [Candidate(p.name, _pinned_sampler(p, warm_calls), p.note) for p in POOLS],
            rounds,
            cfg.progress,
            show="warm_us",
        )
        pinned_table = Table(
            "Warm per-call latency, pinned to one CPU (workers included)",
            pinned,
            "warm_us",
            "µs per call",
            "lower",
            (FORK, ANYIO),
            description=(
                "Each sample in a fresh interpreter pinned to one CPU, so its workers are too: a "
                "call's wake-ups are plain context switches, and the table measures each pool's own "
                "code. Unpinned, a round trip is two cross-CPU wake-ups at least (the loop wakes the "
                "worker, the worker's reply wakes the loop), and on this VM their cost dominates."
            ),
        )
        section.tables.append(pinned_table)
        for ours in (AB_EXECUTOR, AB_TO_PROCESS):
            section.checks.append(
                ratio_check(
                    f"warm process call ≤ anyio to_process ({ours}, pinned to one CPU)",
                    pinned_table,
                    ours,
                    ANYIO,
                    1.0,
                    at_least=False,
                )
            )
    for ours in (AB_EXECUTOR, AB_TO_PROCESS):
        section.checks.append(
            ratio_check(f"warm process call ≤ anyio to_process ({ours})", warm_table, ours, ANYIO, 1.0, at_least=False)
        )
    stats = cpu_table.stats(AB_EXECUTOR)
    section.checks.append(
        Check(
            "CPU-bound speedup ≥ 1.9 on 2 workers",
            "not yet available" if stats is None else f"{stats.median:.2f}x",
            None if stats is None else stats.median >= 1.9,
        )
    )
    section.checks.append(
        ratio_check(
            "cold start ≤ 0.5 x anyio's (safe start method)", cold_table, AB_TO_PROCESS, ANYIO, 0.5, at_least=False
        )
    )
    return section


def _cold_sampler(pool: Pool) -> Callable[[], Sample]:
    return lambda: run_child(Path(__file__), pool.name)


def _pinned_sampler(pool: Pool, warm_calls: int) -> Callable[[], Sample]:
    return lambda: run_child(Path(__file__), pool.name, str(warm_calls))


def _warm_sampler(pool: Pool, iterations: int, warm_calls: int) -> Callable[[], Sample]:
    def sample() -> Sample:
        try:
            return warm_and_cpu(pool, iterations, warm_calls)
        except NotImplementedError as exc:
            raise unavailable_if_missing(exc) from exc

    return sample


def _child_entry(name: str, warm_calls: str = "") -> Sample:
    try:
        return pinned_warm(name, warm_calls) if warm_calls else child(name)
    except NotImplementedError as exc:
        raise NotAvailable(str(unavailable_if_missing(exc))) from exc


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    child_main(sys.argv[2:], _child_entry)
