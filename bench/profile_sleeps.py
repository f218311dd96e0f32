"""Where the 5 ms scenario's efficiency goes: a decomposition, per way, of one sample's wall time.

    .venv/bin/python bench/profile_sleeps.py                     # asyncio, 3 samples per way
    .venv/bin/python bench/profile_sleeps.py --backend trio --samples 5

For 6,000 concurrent calls of ``time.sleep(0.005)`` through 40 threads (the
second half of scenario 2), every call records when it started and ended.
From those, one sample's wall time splits into:

- lead: from ``gather()`` until the first call starts: the loop creating and
  first-stepping 6,000 tasks, which every way pays before any thread works;
- tail: from the last call's end until ``gather()`` returns;
- ramp: from the first call's start until 40 calls run at once;
- mean call: what ``time.sleep(0.005)`` really took, GIL wait after it included;
- busy: time inside calls / (40 x (last end - first start)): how much of the
  threads' time the hand-off lost between calls.

``efficiency`` (the scenario's end-to-end figure) is ideal / wall, and
``pool`` is ideal / (last end - first start). The bare-threads row has no
event loop at all: its lead is the thread start-up, and its mean call is the
OS's own limit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Backend, run_loop
from _offload import AB_ASYNC_WRAP, ASYNCIO_TO_THREAD, THREADS, TRIO_TO_THREAD, Way, for_backend, gather_calls, ways
from scenario_throughput import run_bare_threads

SLEEP = 0.005
CALLS = 6000


class Record:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.spans: list[tuple[float, float]] = []

    def nap(self) -> None:
        start = time.perf_counter()
        time.sleep(SLEEP)
        end = time.perf_counter()
        with self.lock:
            self.spans.append((start, end))


def decompose(spans: list[tuple[float, float]], begin: float, finish: float) -> dict[str, float]:
    ideal = CALLS * SLEEP / THREADS
    first = min(s for s, _ in spans)
    last = max(e for _, e in spans)
    inside = sum(e - s for s, e in spans)
    starts = sorted(s for s, _ in spans)
    return {
        "efficiency": 100 * ideal / (finish - begin),
        "pool": 100 * ideal / (last - first),
        "lead_ms": 1e3 * (first - begin),
        "tail_ms": 1e3 * (finish - last),
        "ramp_ms": 1e3 * (starts[THREADS - 1] - first),
        "call_ms": 1e3 * inside / len(spans),
        "busy": 100 * inside / (THREADS * (last - first)),
    }


def sample_way(backend: Backend, way: Way) -> dict[str, float]:
    record = Record()

    async def main() -> tuple[float, float]:
        async with way.prepare(record.nap) as call:
            await gather_calls(backend, call, 2 * THREADS)
            record.spans.clear()
            begin = time.perf_counter()
            await gather_calls(backend, call, CALLS)
            return begin, time.perf_counter()

    begin, finish = run_loop(backend, main)
    return decompose(record.spans, begin, finish)


def sample_bare() -> dict[str, float]:
    record = Record()
    begin = time.perf_counter()
    run_bare_threads(CALLS, record.nap)
    return decompose(record.spans, begin, time.perf_counter())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    parser.add_argument("--samples", type=int, default=3)
    args = parser.parse_args()
    backend: Backend = args.backend
    base = TRIO_TO_THREAD if backend == "trio" else ASYNCIO_TO_THREAD
    chosen = [w for w in for_backend(backend, ways(handoff_workers=THREADS)) if w.name in (AB_ASYNC_WRAP, base)]
    chosen += [w for w in for_backend(backend, ways(handoff_workers=THREADS)) if w.reference][:1]
    results: dict[str, list[dict[str, float]]] = {w.name: [] for w in chosen}
    results["40 bare threads, no event loop"] = []
    for _ in range(args.samples):  # interleaved: drift hits every way alike
        for way in chosen:
            results[way.name].append(sample_way(backend, way))
        results["40 bare threads, no event loop"].append(sample_bare())
    keys = ["efficiency", "pool", "lead_ms", "tail_ms", "ramp_ms", "call_ms", "busy"]
    print(f"{CALLS:,} x time.sleep({SLEEP}) through {THREADS} threads on {backend}; medians of {args.samples}\n")
    print(f"| way | {' | '.join(keys)} |")
    print(f"|---|{'---|' * len(keys)}")
    for name, samples in results.items():
        cells = [f"{statistics.median(s[k] for s in samples):.2f}" for k in keys]
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
