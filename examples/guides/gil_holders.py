"""Who holds the GIL? Count in Python on the main thread while another thread does something else.

The main thread runs a pure-Python loop for 0.3 s, first alone, then while a
second thread sleeps, waits for a socket, hashes, compresses or runs Python
too. If the second thread releases the GIL while it works or waits, the main
thread keeps its speed; if it holds the GIL, the two take turns and the main
thread counts about half as far. The second thread's CPU time shows the other
half of the story: a thread asleep or waiting uses none; hashlib and zlib use a
whole CPU without the GIL. Medians of 5 rounds; run it on at least 2 CPUs:

    python examples/guides/gil_holders.py [--plot gil_holders.svg]
"""

from __future__ import annotations

import argparse
import hashlib
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


def count_for(seconds: float) -> int:
    """How far the main thread counts in pure Python in `seconds` (checking the clock every 1,000)."""
    count = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(1_000):
            count += 1
    return count


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


def measure(activity: Activity) -> tuple[int, float]:
    """The main thread's count while another thread runs `activity`, and that thread's CPU seconds."""
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
    count = count_for(SECONDS)
    stop.set()
    ours.send(b"!")
    thread.join()
    ours.close()
    theirs.close()
    return count, cpu[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="SVG", help="also write a bar chart of the main thread's speed")
    args = parser.parse_args()

    count_for(0.05)  # warm up
    speeds: dict[str, list[float]] = {label: [] for label, _ in ACTIVITIES}
    cpus: dict[str, list[float]] = {label: [] for label, _ in ACTIVITIES}
    for _ in range(ROUNDS):  # each round times the main thread alone too, so slow drift cancels out
        alone = count_for(SECONDS)
        for label, activity in ACTIVITIES:
            count, cpu = measure(activity)
            speeds[label].append(count / alone)
            cpus[label].append(cpu)
    print(f"{'while the other thread ...':36}  main thread's speed  other thread's CPU time")
    print(f"{'(no other thread)':36}  100%")
    bars = []
    for label, _ in ACTIVITIES:
        speed, cpu = statistics.median(speeds[label]), statistics.median(cpus[label])
        print(f"{label:36}  {speed:4.0%}{'':15}  {cpu:.2f} s of {SECONDS} s")
        bars.append((label, speed * 100))
    if args.plot:
        from _svg import COLORS, bar_chart

        bar_chart(
            args.plot,
            "Main thread's Python speed while another thread ...",
            bars,
            unit="%",
            digits=0,
            axis="% of the speed it counts at alone (2 CPUs)",
            reference=100,
            reference_label="alone",
            colors=[COLORS[0]] * (len(bars) - 1) + [COLORS[1]],
        )


if __name__ == "__main__":
    main()
