"""Process pool map(): ``ProcessExecutor.map`` against ``ProcessPoolExecutor.map``, chunksize 1 and 100.

Each sample maps ``abs`` over 10,000 ints (``list(pool.map(abs, range(N),
chunksize=c))``) on a warm pool of 2 workers kept across samples, so what is
timed is the per-item cost of the pool: pickling, the hand-off to a worker,
the reply, not the work. The candidates are sampled in interleaved rounds,
each round starting one candidate further along, and each asyncbridge sample
is reported as a paired ratio: its time over the stdlib's time in the same
round and with the same chunksize (below 1: asyncbridge is faster). The
stdlib pool uses its platform default start method (``fork`` on Linux before
Python 3.14), which does not matter once the workers run.

Standalone (not part of ``bench/run.py`` yet)::

    python bench/scenario_process_map.py [--rounds 7] [--items 10000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))  # this checkout's asyncbridge

from asyncbridge import ProcessExecutor

WORKERS = 2
CHUNKSIZES = (1, 100)
STDLIB = "ProcessPoolExecutor(2).map"
OURS = "asyncbridge ProcessExecutor(2).map"


def sample(pool: Executor, items: int, chunksize: int) -> float:
    """Seconds to map abs over ``items`` ints with ``chunksize``."""
    start = time.perf_counter()
    results = list(pool.map(abs, range(-items, 0), chunksize=chunksize))
    took = time.perf_counter() - start
    if len(results) != items or results[0] != items:
        raise RuntimeError("wrong results")
    return took


def rotated(names: list[str], shift: int) -> Iterator[str]:
    for i in range(len(names)):
        yield names[(i + shift) % len(names)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args()

    pools: dict[str, Executor] = {STDLIB: ProcessPoolExecutor(WORKERS), OURS: ProcessExecutor(WORKERS)}
    try:
        for pool in pools.values():  # start the workers, warm the paths
            for chunksize in CHUNKSIZES:
                sample(pool, 1_000, chunksize)
        times: dict[tuple[str, int], list[float]] = {(n, c): [] for n in pools for c in CHUNKSIZES}
        keys = [f"{n}|{c}" for n in pools for c in CHUNKSIZES]
        for round_ in range(args.rounds):
            for key in rotated(keys, round_):
                name, chunksize = key.split("|")
                times[name, int(chunksize)].append(sample(pools[name], args.items, int(chunksize)))
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True)

    print(
        f"map(abs, range({args.items:,})) on {WORKERS} warm workers; {args.rounds} interleaved rounds; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print()
    print("| chunksize | pool | median time | calls/s | time ratio to the stdlib, paired median (p25-p75) |")
    print("|---:|---|---:|---:|---:|")
    for chunksize in CHUNKSIZES:
        base = times[STDLIB, chunksize]
        for name in pools:
            own = times[name, chunksize]
            median = statistics.median(own)
            if name == STDLIB:
                ratio = "1 (baseline)"
            else:
                ratios = [a / b for a, b in zip(own, base, strict=True)]
                low, _, high = statistics.quantiles(ratios, n=4)
                ratio = f"{statistics.median(ratios):.2f} ({low:.2f}-{high:.2f})"
            print(f"| {chunksize} | {name} | {median * 1000:.0f} ms | {args.items / median:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
