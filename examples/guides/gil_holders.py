"""Who holds the GIL? Count in Python on the main thread while another thread does something else.

The main thread runs a pure-Python loop for 0.3 s while a second thread
sleeps, waits for a socket, hashes, compresses or runs Python too. The script
prints how much CPU time the second thread used meanwhile, and how long the
counting thread waited for the GIL. A thread asleep or waiting for I/O uses no
CPU and makes nobody wait; hashlib and zlib use a CPU of their own without
the GIL, so the counting thread does not wait for them either; a thread
running Python holds the GIL for all of its CPU time, and the counting thread
waits about as long. Medians of 5 rounds; run it on at least 2 CPUs:

    python examples/guides/gil_holders.py [--plot gil_holders.svg]

The GIL wait is the main thread's wall time minus the time it ran on a CPU and
the time it waited for one (Linux's per-thread schedstat), so other programs
keeping the CPUs busy do not count as GIL waits. Elsewhere the script can only
subtract the thread's CPU time, and a busy machine inflates the figure.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import statistics
import threading
import time
import zlib
from collections.abc import Callable

SECONDS = 0.3  # how long the main thread counts in each measurement
ROUNDS = 5
BUFFER = b"x" * (32 * 1024 * 1024)  # hashlib releases the GIL for inputs over 2 KiB
TEXT = b"the quick brown fox jumps over the lazy dog " * 100_000  # 4.4 MB for zlib


SCHEDSTAT = "/proc/thread-self/schedstat"  # Linux: ns this thread ran, ns it waited for a CPU, time slices


def busy_or_runnable() -> float:
    """Seconds this thread has run or waited for a CPU (only its CPU time where Linux's schedstat is missing)."""
    if os.path.exists(SCHEDSTAT):
        with open(SCHEDSTAT) as stat:
            ran, runnable = stat.read().split()[:2]
        return (int(ran) + int(runnable)) / 1e9
    return time.thread_time()


def count_for(seconds: float) -> float:
    """Count in pure Python for `seconds`; how many of them this thread spent waiting for the GIL."""
    count = 0
    before = busy_or_runnable()
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        for _ in range(1_000):
            count += 1
    wall = time.perf_counter() - started
    return max(0.0, wall - (busy_or_runnable() - before))


def sleeps(stop: threading.Event, sock: socket.socket) -> None:
    time.sleep(SECONDS + 0.05)  # one call, longer than the whole measurement


def waits_for_socket(stop: threading.Event, sock: socket.socket) -> None:
    sock.recv(1)  # blocks until the main thread has finished counting and sends a byte


def hashes(stop: threading.Event, sock: socket.socket) -> None:
    while not stop.is_set():
        hashlib.sha256(BUFFER).digest()


def compresses(stop: threading.Event, sock: socket.socket) -> None:
    while not stop.is_set():
        zlib.compress(TEXT, 6)


def runs_python(stop: threading.Event, sock: socket.socket) -> None:
    while not stop.is_set():
        total = 0
        for i in range(10_000):
            total += i


Activity = Callable[[threading.Event, socket.socket], None]
ACTIVITIES: list[tuple[str, Activity]] = [
    ("sleeps in time.sleep()", sleeps),
    ("waits in socket.recv()", waits_for_socket),
    ("hashes 32 MiB with hashlib.sha256", hashes),
    ("compresses 4 MB with zlib.compress", compresses),
    ("runs a pure-Python loop", runs_python),
]


def measure(activity: Activity) -> tuple[float, float]:
    """The main thread's GIL wait while another thread runs `activity`, and that thread's CPU seconds."""
    stop = threading.Event()
    started = threading.Event()
    cpu: list[float] = []
    ours, theirs = socket.socketpair()

    def other() -> None:
        begin = time.thread_time()
        started.set()
        activity(stop, theirs)
        cpu.append(time.thread_time() - begin)

    thread = threading.Thread(target=other)
    thread.start()
    started.wait()
    waited = count_for(SECONDS)
    stop.set()
    ours.send(b"!")
    thread.join()
    ours.close()
    theirs.close()
    return waited, cpu[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="SVG", help="also write a bar chart of the main thread's speed")
    args = parser.parse_args()

    count_for(0.05)  # warm up
    waits: dict[str, list[float]] = {label: [] for label, _ in ACTIVITIES}
    cpus: dict[str, list[float]] = {label: [] for label, _ in ACTIVITIES}
    for _ in range(ROUNDS):
        for label, activity in ACTIVITIES:
            waited, cpu = measure(activity)
            waits[label].append(waited)
            cpus[label].append(cpu)
    print(f"{f'while the counting thread ran {SECONDS} s, the other thread':56}  used a CPU  made it wait for the GIL")
    bars = []
    for label, _ in ACTIVITIES:
        waited, cpu = statistics.median(waits[label]), statistics.median(cpus[label])
        print(f"{label:56}  {cpu:.2f} s{'':5}{waited:.2f} s")
        bars += [(f"{label}: CPU time", cpu), (f"{label}: GIL wait", waited)]
    if args.plot:
        from _svg import COLORS, bar_chart

        bar_chart(
            args.plot,
            f"Another thread's CPU time, and the GIL wait it caused a thread running Python, in {SECONDS} s",
            bars,
            unit=" s",
            axis="seconds (2 CPUs; the other thread ran in parallel when its CPU time is not matched by a GIL wait)",
            colors=[COLORS[0], COLORS[1]] * len(ACTIVITIES),
        )


if __name__ == "__main__":
    main()
