"""Scenario 2: throughput of many concurrent calls through a 40-thread bound.

Two workloads, each per sample in a fresh event loop after a warm-up batch
that starts the threads:

- ``TRIVIAL`` (10,000) concurrent tasks each awaiting a trivial function:
  pure hand-off cost, reported as calls per second.
- ``SLEEPS`` (6,000) concurrent tasks each awaiting ``time.sleep(0.005)``
  through 40 threads: the ideal wall time is 6000 x 5 ms / 40 = 0.75 s, and
  efficiency is ideal / measured (100% means the pool never idles). A second
  table times only the pool's share: from the first call's start to the last
  call's end, leaving out the loop's time to create 6,000 tasks before and
  to resume them after, which every candidate pays alike.

The minimal hand-off reference uses one worker for trivial calls (as in issue
6: more workers only add GIL contention there) and 40 for the sleeps (with
one it would take 30 s).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from _harness import Backend, Candidate, Check, Config, Sample, Section, Table, measure, ratio_check, run_loop
from _offload import (
    AB_ASYNC_WRAP,
    ASYNCIO_TO_THREAD,
    RAW,
    THREADS,
    TRIO_TO_THREAD,
    Way,
    for_backend,
    gather_calls,
    ways,
)

NAME = "throughput"
TITLE = "2. Throughput of concurrent calls, 40-thread bound (thread offload)"

SLEEP = 0.005


def noop() -> None:
    return None


def nap() -> None:
    time.sleep(SLEEP)


def sample(
    backend: Backend,
    way: Way,
    fn: Callable[[], None],
    n: int,
    warmup: int,
    on_start: Callable[[], None] | None = None,
) -> float:
    """Seconds for ``n`` concurrent calls of ``fn`` through ``way`` (``on_start`` after the warm-up)."""

    async def main() -> float:
        async with way.prepare(fn) as call:
            await gather_calls(backend, call, warmup)
            if on_start is not None:
                on_start()
            start = time.perf_counter()
            await gather_calls(backend, call, n)
            return time.perf_counter() - start

    return run_loop(backend, main)


def _trivial(backend: Backend, way: Way, n: int) -> Callable[[], Sample]:
    def one() -> Sample:
        seconds = sample(backend, way, noop, n, 2 * THREADS)
        return {"calls_per_s": n / seconds, "s": seconds}

    return one


class Span:
    """The first start and the last end of the calls it wraps, across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first = float("inf")
        self.last = 0.0
        self.inside = 0.0  # seconds spent inside calls, summed over threads

    def reset(self) -> None:
        self.first, self.last, self.inside = float("inf"), 0.0, 0.0

    def nap(self) -> None:
        start = time.perf_counter()
        time.sleep(SLEEP)
        end = time.perf_counter()
        with self.lock:
            self.first = min(self.first, start)
            self.last = max(self.last, end)
            self.inside += end - start

    def sample(self, ideal: float, seconds: float) -> Sample:
        span = self.last - self.first
        return {
            "efficiency": 100 * ideal / seconds,
            "pool_efficiency": 100 * ideal / span,
            # How busy the pool kept its threads between the first start and the last end,
            # whatever time.sleep(0.005) really took: the hand-off's own share of the loss.
            "utilisation": 100 * self.inside / (THREADS * span),
        }


def _sleeps(backend: Backend, way: Way, n: int) -> Callable[[], Sample]:
    ideal = n * SLEEP / THREADS

    def one() -> Sample:
        span = Span()
        seconds = sample(backend, way, span.nap, n, 2 * THREADS, span.reset)
        # The pool's own share: from the first call's start to the last one's end, without
        # the loop's time to create the tasks before and to resume them after.
        return span.sample(ideal, seconds)

    return one


def _sleep_overshoot(n: int = 100) -> float:
    """How long ``time.sleep(SLEEP)`` really takes here (timer slack, wake-up latency)."""
    start = time.perf_counter()
    for _ in range(n):
        time.sleep(SLEEP)
    return (time.perf_counter() - start) / n


def run_bare_threads(n: int, fn: Callable[[], None]) -> float:
    """Seconds for 40 plain threads to make ``n`` calls of ``fn`` between them: no event loop, no hand-off."""
    tickets = itertools.count()  # shared, so a thread delayed by the OS leaves its work to others

    def work() -> None:
        while next(tickets) < n:
            fn()

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def _bare_threads(n: int) -> Callable[[], Sample]:
    """The ceiling: 40 plain threads taking n sleeps from a shared counter."""
    ideal = n * SLEEP / THREADS

    def one() -> Sample:
        span = Span()
        seconds = run_bare_threads(n, span.nap)
        return span.sample(ideal, seconds)

    return one


def run(cfg: Config) -> Section:
    trivial = cfg.size(10_000, 3_000)
    sleeps = cfg.size(6_000, 2_400)
    trivial_rounds = cfg.rounds_or(9)  # its ratios swing between runs: 5 rounds were too few
    sleep_rounds = cfg.rounds_or(3)
    overshoot = _sleep_overshoot()
    section = Section(
        NAME,
        TITLE,
        intro=(
            f"{trivial:,} concurrent tasks each awaiting `noop()` ({trivial_rounds} rounds), and "
            f"{sleeps:,} concurrent tasks each awaiting `time.sleep(0.005)` ({sleep_rounds} rounds), "
            f"every pool bounded at {THREADS} threads; a fresh event loop per sample, after a "
            f"warm-up batch of {2 * THREADS} calls. Efficiency = ideal wall time "
            f"({sleeps:,} x 5 ms / {THREADS} = {sleeps * SLEEP / THREADS:.2f} s) / measured. "
            f"Two things cap it on this machine for every candidate: `time.sleep(0.005)` itself takes "
            f"{overshoot * 1e3:.2f} ms here (the '{THREADS} bare threads' row shows the resulting limit), and "
            f"the loop needs tens of milliseconds to create {sleeps:,} tasks before the first call can start "
            f"(the minimal hand-off rows show the limit with that)."
        ),
    )
    for backend in cfg.backends:
        base = TRIO_TO_THREAD if backend == "trio" else ASYNCIO_TO_THREAD
        baselines = (base,) if backend == "trio" else (base, RAW)

        selection = for_backend(backend, ways(handoff_workers=1))
        rows = measure(
            f"throughput/{backend}/trivial",
            [Candidate(w.name, _trivial(backend, w, trivial), w.note, w.reference) for w in selection],
            trivial_rounds,
            cfg.progress,
            show="calls_per_s",
        )
        table = Table(
            f"{trivial:,} concurrent trivial calls on {backend}",
            rows,
            "calls_per_s",
            "calls/s",
            "higher",
            baselines,
            digits=0,
        )
        section.tables.append(table)
        need = 3.0 if backend == "trio" else 5.0
        section.checks.append(
            ratio_check(
                f"10k trivial calls ≥ {need:g} x {base} ({backend})",
                table,
                AB_ASYNC_WRAP,
                base,
                need,
                at_least=True,
            )
        )

        selection = for_backend(backend, ways(handoff_workers=THREADS))
        bare = Candidate(
            f"{THREADS} bare threads, no event loop",
            _bare_threads(sleeps),
            "the OS limit: time.sleep(0.005) itself overshoots",
            reference=True,
        )
        rows = measure(
            f"throughput/{backend}/5ms",
            [Candidate(w.name, _sleeps(backend, w, sleeps), w.note, w.reference) for w in selection] + [bare],
            sleep_rounds,
            cfg.progress,
            show="efficiency",
        )
        table = Table(
            f"{sleeps:,} concurrent 5 ms calls on {backend}: efficiency",
            rows,
            "efficiency",
            "% of ideal",
            "higher",
            baselines,
        )
        pool_table = Table(
            f"... the pool's share alone (first call start to last call end) on {backend}",
            rows,
            "pool_efficiency",
            "% of ideal",
            "higher",
            baselines,
        )
        busy_table = Table(
            f"... how busy the pool kept its {THREADS} threads (time inside calls / ({THREADS} x the pool's share)) "
            f"on {backend}",
            rows,
            "utilisation",
            "% busy",
            "higher",
            baselines,
            description=(
                "Informative: how much of the threads' time went to the hand-off between calls, with the "
                "OS's sleep overshoot taken out. Time inside a call runs from the function's start to its "
                "return, so a thread waiting for the GIL after its sleep still counts as busy."
            ),
        )
        section.tables += [table, pool_table, busy_table]
        pool_stats = pool_table.stats(AB_ASYNC_WRAP)
        stats = table.stats(AB_ASYNC_WRAP)
        for what, st in (("end to end", stats), ("the pool's share", pool_stats)):
            target = f"5 ms calls ≥ 95% efficiency ({backend}, {what})"
            if st is None:
                section.checks.append(Check(target, "not measured", None))
            else:
                section.checks.append(Check(target, f"{st.median:.1f}%", st.median >= 95.0))
    return section
