"""Does a function scale on threads? Time it on 1 thread, then the same work split over 2.

hashlib releases the GIL while it hashes a buffer larger than 2 KiB, so two
threads hash two buffers at once; a pure-Python loop holds the GIL, so two
threads take turns and finish no sooner than one. Run it on a machine with at
least 2 CPUs:

    python examples/guides/gil_release.py [--plot speedups.svg]

``--plot`` also draws the two speedups as a bar chart (with ``_svg.py``, next
to this file).
"""

from __future__ import annotations

import argparse
import hashlib
import threading
import time
from collections.abc import Callable

BUFFER = b"x" * (32 * 1024 * 1024)  # 32 MiB: hashing it takes milliseconds, all without the GIL
JOBS = 16  # jobs of each kind per measurement; chosen so a measurement takes about 0.3 s here


def hash_buffer() -> None:
    hashlib.sha256(BUFFER).digest()


def count_up() -> None:
    total = 0
    for i in range(1_000_000):
        total += i


def timed(job: Callable[[], None], threads: int) -> float:
    """Seconds to run JOBS calls of job, split evenly over `threads` threads."""

    def worker() -> None:
        for _ in range(JOBS // threads):
            job()

    started = time.perf_counter()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return time.perf_counter() - started


def speedup(job: Callable[[], None]) -> tuple[float, float]:
    """Best of 3 rounds on 1 thread and on 2 (the best is the least disturbed by other programs)."""
    job()  # warm up
    one = min(timed(job, 1) for _ in range(3))
    two = min(timed(job, 2) for _ in range(3))
    return one, two


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="SVG", help="also write a bar chart of the speedups to this file")
    args = parser.parse_args()
    speedups = []
    for label, job in (("hashlib.sha256, 32 MiB buffers", hash_buffer), ("pure-Python loop", count_up)):
        one, two = speedup(job)
        print(f"{label:30}  1 thread {one:.2f} s  2 threads {two:.2f} s  speedup {one / two:.2f}x")
        speedups.append((label, one / two))
    if args.plot:
        from _svg import bar_chart

        bar_chart(
            args.plot,
            "The same jobs on 2 threads instead of 1: speedup",
            speedups,
            unit="x",
            axis="time on 1 thread / time on 2 threads (2 CPUs)",
            reference=1.0,
            reference_label="no faster than 1 thread",
        )


if __name__ == "__main__":
    main()
