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

Part of ``bench/run.py`` (``python3 dev.py bench --scenario process_map``), or
on its own::

    python bench/scenario_process_map.py [--rounds 21] [--items 10000]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import BACKENDS, Candidate, Config, Progress, Section, Table, measure

NAME = "process_map"
TITLE = "7. Process pool map(): ProcessExecutor.map against ProcessPoolExecutor.map"
WORKERS = 2
ITEMS = 10_000
CHUNKSIZES = (1, 100)
STDLIB = "ProcessPoolExecutor(2).map"
OURS = "asyncbridge ProcessExecutor(2).map"


def sample(pool: Executor, items: int, chunksize: int) -> dict[str, float]:
    """Milliseconds to map abs over ``items`` ints with ``chunksize``."""
    start = time.perf_counter()
    results = list(pool.map(abs, range(-items, 0), chunksize=chunksize))
    took = time.perf_counter() - start
    if len(results) != items or results[0] != items:
        raise RuntimeError("wrong results")
    return {"ms": took * 1000, "per_s": items / took}


def run(cfg: Config, items: int = ITEMS) -> Section:
    from asyncbridge import ProcessExecutor  # imported here, after run.py's --src has chosen which asyncbridge

    rounds = cfg.rounds_or(21)
    items = cfg.size(items, 2_000)
    section = Section(
        NAME,
        TITLE,
        intro=(
            f"`list(pool.map(abs, range({items}), chunksize=c))` on {WORKERS} warm workers of each pool "
            f"(kept across samples), {rounds} interleaved rounds: what is timed is the pool's per-item cost "
            "(pickling, the hand-off to a worker, the reply), not the work. The stdlib pool uses its platform's "
            "default start method, which does not matter once the workers run. No event loop is involved."
        ),
    )
    if "asyncio" not in cfg.backends:
        section.intro += " (Skipped: it runs with the asyncio backends only.)"
        return section
    pools: dict[str, Executor] = {STDLIB: ProcessPoolExecutor(WORKERS), OURS: ProcessExecutor(WORKERS)}
    try:
        for pool in pools.values():  # start the workers, warm the paths
            for chunksize in CHUNKSIZES:
                sample(pool, 1_000, chunksize)
        candidates = [
            Candidate(f"{name}, chunksize {c}", functools.partial(sample, pool, items, c))
            for c in CHUNKSIZES
            for name, pool in pools.items()
        ]
        rows = measure("process_map", candidates, rounds, cfg.progress, show="ms")
    finally:
        for pool in pools.values():
            pool.shutdown(wait=True)
    for c in CHUNKSIZES:
        section.tables.append(
            Table(
                f"map() of {items:,} trivial calls, chunksize {c}",
                [row for row in rows if row.name.endswith(f", chunksize {c}")],
                "ms",
                "ms",
                "lower",
                (f"{STDLIB}, chunksize {c}",),
            )
        )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--items", type=int, default=ITEMS)
    args = parser.parse_args()
    started = time.perf_counter()
    section = run(Config(progress=Progress(), rounds=args.rounds, backends=BACKENDS), args.items)
    section.seconds = time.perf_counter() - started
    print(section.to_markdown())


if __name__ == "__main__":
    main()
