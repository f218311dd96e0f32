"""Scenario 1: the latency of one await through a worker thread, in sequence.

One task awaits a trivial function (``return None``) through each way, one
call after another, so nothing overlaps: what is left is the full round trip
(wake a worker, run, wake the loop, resume the task). Per sample: a fresh
event loop, 200 warm-up calls (threads started, caches warm), then the mean
of ``CALLS`` timed calls.

A second table per backend repeats the rows with each sample in a fresh
interpreter pinned to one CPU before any thread starts. A sequential round
trip is two thread wake-ups, and on a VM a thread woken on the other CPU can
take tens of microseconds to run, swinging from minute to minute with the
hypervisor; pinned, a wake-up is a plain context switch, so the table shows
what each way's own code costs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from _harness import (
    CAN_PIN,
    Backend,
    Candidate,
    Config,
    Sample,
    Section,
    Table,
    child_main,
    measure,
    pin_to_one_cpu,
    ratio_check,
    run_child,
    run_loop,
)
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


def pinned_child(backend: str, name: str, calls: str) -> Sample:
    """In a fresh interpreter pinned to one CPU before any thread starts: one sample of one way."""
    pin_to_one_cpu()
    chosen: Backend = "trio" if backend == "trio" else "uvloop" if backend == "uvloop" else "asyncio"
    way = next(w for w in for_backend(chosen, ways()) if w.name == name)
    return sample(chosen, way, int(calls))


def _pinned_sampler(backend: Backend, way: Way, calls: int) -> Callable[[], Sample]:
    return lambda: run_child(Path(__file__), backend, way.name, str(calls))


def run(cfg: Config) -> Section:
    calls = cfg.size(1000, 300)
    rounds = cfg.rounds_or(9)
    # Pinned samples each start an interpreter (about half a second): fewer rounds.
    pinned_rounds = min(rounds, 5) if CAN_PIN else 0
    section = Section(
        NAME,
        TITLE,
        intro=(
            f"One task awaits `noop()` through each way, {calls:,} times in sequence per sample "
            f"(after {WARMUP} warm-up calls), in a fresh event loop; mean µs per await. "
            f"{rounds} rounds. The pinned tables repeat each way {pinned_rounds} times in fresh "
            "interpreters pinned to one CPU, which takes the VM's cross-CPU wake-up latency out "
            "(see the module docstring of bench/scenario_latency.py)."
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
        if pinned_rounds:
            candidates = [Candidate(w.name, _pinned_sampler(backend, w, calls), w.note, w.reference) for w in selection]
            rows = measure(f"latency/{backend}/pinned", candidates, pinned_rounds, cfg.progress, show="us")
            pinned = Table(
                f"Sequential await latency on {backend}, pinned to one CPU",
                rows,
                "us",
                "µs per await",
                "lower",
                baselines,
            )
            section.tables.append(pinned)
            base_name = TRIO_TO_THREAD if backend == "trio" else ASYNCIO_TO_THREAD
            section.checks.append(
                ratio_check(
                    f"sequential latency ≤ 0.85 x {base_name} ({backend}, pinned to one CPU: the code's own cost)",
                    pinned,
                    AB_ASYNC_WRAP,
                    base_name,
                    0.85,
                    at_least=False,
                )
            )
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


if __name__ == "__main__" and sys.argv[1:2] == ["--child"]:
    child_main(sys.argv[2:], pinned_child)
