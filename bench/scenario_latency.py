"""Scenario 1: the latency of one await through a worker thread, in sequence.

One task awaits a trivial function (``return None``) through each way, one
call after another, so nothing overlaps: what is left is the full round trip
(wake a worker, run, wake the loop, resume the task). Per sample: a fresh
event loop, 200 warm-up calls (threads started, caches warm), then the mean
of ``CALLS`` timed calls.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from _harness import Backend, Candidate, Config, Sample, Section, Table, measure, ratio_check, run_loop
from _offload import AB_ASYNC_WRAP, ASYNCIO_TO_THREAD, RAW, TRIO_TO_THREAD, Way, for_backend, ways

NAME = "latency"
TITLE = "1. Sequential await latency (thread offload)"

WARMUP = 200


def noop() -> None:
    return None


def sample(backend: Backend, way: Way, calls: int) -> Sample:
    async def main() -> float:
        async with way.prepare(noop) as call:
            for _ in range(WARMUP):
                await call()
            start = time.perf_counter()
            for _ in range(calls):
                await call()
            return time.perf_counter() - start

    return {"us": run_loop(backend, main) / calls * 1e6}


def _sampler(backend: Backend, way: Way, calls: int) -> Callable[[], Sample]:
    return lambda: sample(backend, way, calls)


def run(cfg: Config) -> Section:
    calls = cfg.size(1000, 300)
    rounds = cfg.rounds_or(9)
    section = Section(
        NAME,
        TITLE,
        intro=(
            f"One task awaits `noop()` through each way, {calls:,} times in sequence per sample "
            f"(after {WARMUP} warm-up calls), in a fresh event loop; mean µs per await. "
            f"{rounds} rounds."
        ),
    )
    for backend in cfg.backends:
        selection = for_backend(backend, ways())
        candidates = [Candidate(w.name, _sampler(backend, w, calls), w.note, w.reference) for w in selection]
        rows = measure(f"latency/{backend}", candidates, rounds, cfg.progress, show="us")
        base = TRIO_TO_THREAD if backend == "trio" else ASYNCIO_TO_THREAD
        baselines = (base,) if backend == "trio" else (base, RAW)
        table = Table(
            f"Sequential await latency on {backend}",
            rows,
            "us",
            "µs per await",
            "lower",
            baselines,
        )
        section.tables.append(table)
        if backend == "trio":
            section.checks.append(
                ratio_check(
                    "latency on trio ≤ 0.85 x trio.to_thread.run_sync (informative; the issue's target is asyncio)",
                    table,
                    AB_ASYNC_WRAP,
                    TRIO_TO_THREAD,
                    0.85,
                    at_least=False,
                )
            )
        else:
            section.checks.append(
                ratio_check(
                    f"sequential latency ≤ 0.85 x asyncio.to_thread ({backend})",
                    table,
                    AB_ASYNC_WRAP,
                    ASYNCIO_TO_THREAD,
                    0.85,
                    at_least=False,
                )
            )
    return section
