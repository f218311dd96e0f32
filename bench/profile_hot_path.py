"""Where the time goes on asyncbridge's hot path, against asyncio.to_thread and the minimal hand-off.

    .venv/bin/python bench/profile_hot_path.py                   # counters, every loop
    .venv/bin/python bench/profile_hot_path.py --backend trio    # one loop
    .venv/bin/python bench/profile_hot_path.py --cprofile        # + cProfile of loop and workers
    .venv/bin/python bench/profile_hot_path.py --src HEAD        # asyncbridge as of a commit

Counters, per call, for 10,000 concurrent trivial calls (the throughput
scenario) and for 2,000 sequential ones (the latency scenario), medians of a
few fresh-loop runs:

- wall: wall time per call;
- loop CPU: CPU time of the event loop thread (``time.thread_time``);
- worker CPU: CPU time of every other thread (process CPU minus loop CPU);
- switches: voluntary + involuntary context switches of all threads
  (``/proc/self/task/*/status``): each one is a thread that went to sleep or
  was preempted, the unit cost of a hand-off;
- threads: distinct worker threads that ran a call;
- wake-ups: asyncbridge inbox drains per 1000 calls (one
  ``call_soon_threadsafe`` or ``run_sync_soon`` each), counted by wrapping
  the inbox's ``_drain``.

``--cprofile`` then profiles the loop thread (cProfile) and every worker
thread (a cProfile started in each new thread through ``threading.setprofile``)
for the 10,000-call workload through ``async_wrap``, and prints the top
functions of each by own CPU time (``time.thread_time``: waiting for the GIL
or for work is not counted; the profiler itself inflates every entry).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import BACKENDS, Backend, run_loop, use_asyncbridge_from
from _offload import AB_ASYNC_WRAP, ASYNCIO_TO_THREAD, TRIO_TO_THREAD, Way, gather_calls, ways

CONCURRENT = 10_000
SEQUENTIAL = 2_000
RUNS = 5


def switches() -> int:
    """Context switches so far, summed over this process's live threads."""
    total = 0
    for status in Path("/proc/self/task").glob("*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.endswith("ctxt_switches:") or "ctxt_switches" in line:
                    total += int(line.split()[1])
        except (OSError, ValueError):
            continue  # a thread that just exited
    return total


class DrainCounter:
    """Counts asyncbridge inbox drains (loop wake-ups) by wrapping ``_drain`` on the classes."""

    def __init__(self) -> None:
        self.count = 0
        self._restore: list[tuple[type, Callable[..., Any]]] = []

    def install(self) -> None:
        classes: list[type] = []
        try:
            from asyncbridge._backends._asyncio import AsyncioInbox

            classes.append(AsyncioInbox)
        except ImportError:
            pass
        try:
            from asyncbridge._backends._trio import TrioInbox

            classes.append(TrioInbox)
        except ImportError:
            pass
        for cls in classes:
            original = cls.__dict__.get("_drain")
            if original is None:
                continue

            def counted(inbox: Any, _original: Callable[..., Any] = original) -> Any:
                self.count += 1
                return _original(inbox)

            setattr(cls, "_drain", counted)  # noqa: B010
            self._restore.append((cls, original))


def measure(backend: Backend, way: Way, n: int, concurrent: bool, drains: DrainCounter) -> dict[str, float]:
    ran_in: set[int] = set()

    def noop() -> None:
        ran_in.add(threading.get_ident())

    async def main() -> dict[str, float]:
        async with way.prepare(noop) as call:
            await gather_calls(backend, call, 200)  # warm: threads started
            ran_in.clear()
            sw0, d0 = switches(), drains.count
            c0, l0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
            if concurrent:
                await gather_calls(backend, call, n)
            else:
                for _ in range(n):
                    await call()
            t1, l1, c1 = time.perf_counter(), time.thread_time(), time.process_time()
            sw1, d1 = switches(), drains.count
        loop_cpu = l1 - l0
        return {
            "wall": 1e6 * (t1 - t0) / n,
            "loop": 1e6 * loop_cpu / n,
            "workers": 1e6 * ((c1 - c0) - loop_cpu) / n,
            "switches": (sw1 - sw0) / n,
            "threads": float(len(ran_in)),
            "wakeups": (d1 - d0) / n,
        }

    return run_loop(backend, main)


def counters(backends: list[Backend], drains: DrainCounter, runs: int = RUNS) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for backend in backends:
        base = TRIO_TO_THREAD if backend == "trio" else ASYNCIO_TO_THREAD
        selected = [
            w
            for w in ways(handoff_workers=1)
            if backend in w.backends and (w.name in (AB_ASYNC_WRAP, base) or w.reference)
        ]
        for concurrent, n in ((True, CONCURRENT), (False, SEQUENTIAL)):
            what = f"{n:,} concurrent" if concurrent else f"{n:,} sequential"
            print(f"\n### {backend}: {what} trivial calls, per call (median of {runs} runs)\n")
            print("| way | wall µs | loop CPU µs | worker CPU µs | switches | threads | wake-ups per 1000 |")
            print("|---|---|---|---|---|---|---|")
            results: dict[str, list[dict[str, float]]] = {w.name: [] for w in selected}
            for r in range(runs):
                for w in selected[r % len(selected) :] + selected[: r % len(selected)]:
                    results[w.name].append(measure(backend, w, n, concurrent, drains))
            for w in selected:
                med = {k: statistics.median(s[k] for s in results[w.name]) for k in results[w.name][0]}
                table[f"{backend} {what} {w.name}"] = med
                wake = f"{1000 * med['wakeups']:.1f}" if w.name == AB_ASYNC_WRAP else ""
                print(
                    f"| {w.name} | {med['wall']:.1f} | {med['loop']:.1f} | {med['workers']:.1f} | "
                    f"{med['switches']:.2f} | {med['threads']:.0f} | {wake} |"
                )
    return table


def cprofile(backend: Backend, sequential: bool = False) -> None:
    """cProfile the loop thread and each worker thread for 10,000 concurrent (or sequential) calls."""
    from asyncbridge import ThreadExecutor, async_wrap

    worker_profiles: list[cProfile.Profile] = []

    def start_in_thread(frame: Any, event: str, arg: Any) -> None:
        sys.setprofile(None)
        profile = cProfile.Profile(time.thread_time)  # CPU time: GIL waits and idling excluded
        worker_profiles.append(profile)
        profile.enable()

    # Threads started while the hook is set profile themselves: a fresh
    # executor's workers all start during the warm-up below.
    executor = ThreadExecutor(40, name="profiled")

    def noop() -> None:
        return None

    wrapped = async_wrap(executor=executor)(noop)
    loop_profile = cProfile.Profile(time.thread_time)

    async def main() -> None:
        threading.setprofile(start_in_thread)
        try:
            await gather_calls(backend, wrapped, 2_000)
        finally:
            threading.setprofile(None)  # type: ignore[arg-type]
        loop_profile.enable()
        if sequential:
            for _ in range(SEQUENTIAL):
                await wrapped()
        else:
            await gather_calls(backend, wrapped, CONCURRENT)
        loop_profile.disable()

    run_loop(backend, main)
    executor.shutdown(wait=True)  # workers exit: their profiles are complete and still
    what = f"{SEQUENTIAL:,} sequential" if sequential else f"{CONCURRENT:,} concurrent"
    print(f"\n### cProfile, {backend}, {what} async_wrap calls: loop thread\n")
    print(_top(loop_profile))
    if worker_profiles:
        merged = pstats.Stats(worker_profiles[0])
        for p in worker_profiles[1:]:
            merged.add(p)
        print(f"\n### ... and its {len(worker_profiles)} worker threads, merged\n")
        print(_top(merged))


def _top(stats: cProfile.Profile | pstats.Stats, n: int = 30) -> str:
    out = io.StringIO()
    s = stats if isinstance(stats, pstats.Stats) else pstats.Stats(stats)
    s.stream = out  # type: ignore[attr-defined]
    s.strip_dirs().sort_stats("tottime").print_stats(n)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    return "```\n" + "\n".join(lines[start - 2 :]).rstrip() + "\n```"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", "-b", action="append", choices=BACKENDS)
    parser.add_argument("--cprofile", action="store_true", help="also cProfile loop and worker threads")
    parser.add_argument("--sequential", action="store_true", help="cProfile the sequential workload instead")
    parser.add_argument("--no-counters", action="store_true", help="skip the counters tables")
    parser.add_argument("--src", metavar="REV", help="asyncbridge as of this git revision")
    parser.add_argument("--runs", type=int, default=RUNS, help="fresh-loop runs per way (median)")
    parser.add_argument("--json", type=Path, help="also write the counters' medians here")
    args = parser.parse_args(argv)
    if args.src:
        print(f"asyncbridge from {use_asyncbridge_from(args.src)}")
    backends: list[Backend] = args.backend or list(BACKENDS)
    drains = DrainCounter()
    drains.install()
    if not args.no_counters:
        table = counters(backends, drains, args.runs)
        if args.json:
            args.json.write_text(json.dumps(table, indent=1))
    if args.cprofile:
        for backend in backends:
            cprofile(backend, args.sequential)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
