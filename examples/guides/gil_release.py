"""Does a function scale on threads? Time it on 1 thread, then the same work split over 2.

hashlib releases the GIL while it hashes a buffer larger than 2 KiB, so two
threads hash two buffers at once; a pure-Python loop holds the GIL, so two
threads take turns and finish no sooner than one. Run it on a machine with at
least 2 CPUs:

    python examples/guides/gil_release.py
"""

from __future__ import annotations

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
    for label, job in (("hashlib.sha256, 32 MiB buffers", hash_buffer), ("pure-Python loop", count_up)):
        one, two = speedup(job)
        print(f"{label:30}  1 thread {one:.2f} s  2 threads {two:.2f} s  speedup {one / two:.2f}x")


if __name__ == "__main__":
    main()
