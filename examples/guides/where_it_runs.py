"""What runs where: a coroutine, a call sent to a thread, a call sent to a process.

    python examples/guides/where_it_runs.py [asyncio|uvloop|trio] [--plot where_it_runs.svg]

It prints which thread and process ran each kind of code, then starts 12 calls
of ``time.sleep(0.1)`` at once, twice: through the event loop's own thread pool
(``loop.run_in_executor(None, ...)`` on asyncio and uvloop,
``trio.to_thread.run_sync`` on trio), and through asyncbridge's ``async_wrap``.
asyncio's default pool has at most ``min(32, CPUs + 4)`` threads however many
tasks ``gather`` starts: on 2 CPUs, 6 threads run the 12 calls in two waves.
``--plot`` draws which thread ran which call when.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Awaitable, Callable

import anyio
from _svg import Lane, Span, timeline

from asyncbridge import async_wrap, to_process

CALLS = 12
SECONDS = 0.1
START = time.perf_counter()


def where() -> tuple[str, int]:
    return threading.current_thread().name, os.getpid()


def say(what: str, place: tuple[str, int]) -> None:
    name, pid = place
    process = "the event loop's process" if pid == os.getpid() else "another process"
    print(f"{what:24} ran in thread {name!r} of {process}")


def nap() -> tuple[str, float, float]:
    """Sleep in the calling thread; say which thread it was, and when it slept."""
    began = time.perf_counter() - START
    time.sleep(SECONDS)
    return str(threading.get_ident()), began, time.perf_counter() - START


napping_in_a_thread = async_wrap(nap)


async def all_at_once(call: Callable[[], Awaitable[tuple[str, float, float]]]) -> list[tuple[str, float, float]]:
    """Start CALLS calls concurrently (what asyncio.gather does) and collect what each reports."""
    results: list[tuple[str, float, float]] = []

    async def one() -> None:
        results.append(await call())

    async with anyio.create_task_group() as tg:
        for _ in range(CALLS):
            tg.start_soon(one)
    return results


def report(label: str, results: list[tuple[str, float, float]]) -> None:
    threads = len({name for name, _, _ in results})
    took = max(end for _, _, end in results) - min(start for _, start, _ in results)
    print(f"{label:28} {CALLS} calls of time.sleep({SECONDS}) on {threads:2} threads, in {took:.1f} s")


async def main(loop: str, plot: str | None) -> None:
    say("the coroutine", where())
    say("an async_wrap function", await async_wrap(where)())
    say("a to_process call", await to_process(where))

    if loop == "trio":
        import trio

        label = "trio.to_thread.run_sync"
        pool = await all_at_once(lambda: trio.to_thread.run_sync(nap))
    else:
        import asyncio

        label = "run_in_executor(None, ...)"
        pool = await all_at_once(lambda: asyncio.get_running_loop().run_in_executor(None, nap))
    report(label, pool)
    ours = await all_at_once(napping_in_a_thread)
    report("asyncbridge async_wrap", ours)

    if plot:
        lanes: list[Lane] = []
        for results, kind in ((pool, label), (ours, "async_wrap")):
            names: dict[str, Lane] = {}
            for name, start, end in sorted(results, key=lambda r: r[1]):
                if name not in names:
                    names[name] = Lane(f"{kind}: thread {len(names) + 1}")
                    lanes.append(names[name])
                names[name].spans.append(Span(start, end, f"time.sleep({SECONDS}) via {kind}"))
        origin = min(span.start for lane in lanes for span in lane.spans)
        for lane in lanes:
            lane.spans = [Span(s.start - origin, s.end - origin, s.kind) for s in lane.spans]
        title = f"{CALLS} calls of time.sleep({SECONDS}) started at once, on {loop}: which thread ran each"
        timeline(plot, title, lanes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loop", nargs="?", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    parser.add_argument("--plot", metavar="SVG", help="also draw the threads' timeline to this file")
    args = parser.parse_args()
    backend, options = ("asyncio", {"use_uvloop": True}) if args.loop == "uvloop" else (args.loop, {})
    anyio.run(main, args.loop, args.plot, backend=backend, backend_options=options)
