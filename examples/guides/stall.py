"""CPU-bound code in a coroutine stalls the event loop; in a thread or a process it does not.

    python examples/guides/stall.py [asyncio|uvloop|trio] [--plot stall.svg]

A task wakes every 10 ms and notes the time. Meanwhile the program runs 0.3 s
of pure Python three ways: called in a coroutine, sent to a thread
(``to_thread``), sent to a process (``to_process``). It prints how late the
10 ms timer fired at worst during each. In the coroutine nothing else on the
loop runs until the work returns; in a thread the loop gets the GIL back
within the interpreter's switch interval (5 ms); a process has a GIL of its
own. ``--plot`` draws when the timer fired and where the work ran.
"""

from __future__ import annotations

import argparse
import itertools
import time

import anyio
from _svg import Lane, Span, timeline

from asyncbridge import to_process, to_thread

TICK = 0.01
WORK = 0.3
START = time.perf_counter()


def now() -> float:
    return time.perf_counter() - START


def spin(seconds: float) -> float:
    """Pure Python for `seconds`: holds the GIL except when the interpreter makes it switch."""
    deadline = time.perf_counter() + seconds
    laps = 0
    while time.perf_counter() < deadline:
        laps += 1
    return seconds


async def main(loop: str, plot: str | None) -> None:
    await to_process(spin, 0.0)  # start the worker process now, not while measuring
    ticks: list[float] = []
    phases: list[tuple[str, str, float, float]] = []  # how, where, start, end

    async def ticker() -> None:
        while True:
            await anyio.sleep(TICK)
            ticks.append(now())

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        await anyio.sleep(0.1)
        began = now()
        spin(WORK)  # the mistake: CPU-bound work called right in a coroutine
        phases.append(("called in the coroutine", "event loop thread", began, now()))
        await anyio.sleep(0.1)
        began = now()
        await to_thread(spin, WORK)
        phases.append(("sent to a thread", "worker thread", began, now()))
        await anyio.sleep(0.1)
        began = now()
        await to_process(spin, WORK)
        phases.append(("sent to a process", "worker process", began, now()))
        await anyio.sleep(0.1)
        tg.cancel_scope.cancel()

    print(f"0.3 s of pure Python, and a timer that should fire every {TICK * 1000:.0f} ms on the {loop} loop:")
    for how, _, start, end in phases:
        gaps = [b - a for a, b in itertools.pairwise(ticks) if start < b <= end + 2 * TICK]
        late = max(gaps) - TICK
        print(f"  {how:24} the timer fired up to {late * 1000:3.0f} ms late")

    if plot:
        lanes = {where: Lane(where) for where in ("event loop thread", "worker thread", "worker process")}
        for _, where, start, end in phases:
            lanes[where].spans.append(Span(start, end, f"{WORK} s of pure Python"))
        lanes["event loop thread"].spans += [Span(t, t, f"{TICK * 1000:.0f} ms timer fires") for t in ticks]
        origin = ticks[0] - TICK
        for lane in lanes.values():
            lane.spans = [Span(s.start - origin, s.end - origin, s.kind) for s in lane.spans]
        title = f"A {TICK * 1000:.0f} ms timer on {loop} while pure Python runs in the coroutine, a thread, a process"
        timeline(plot, title, list(lanes.values()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loop", nargs="?", default="asyncio", choices=["asyncio", "uvloop", "trio"])
    parser.add_argument("--plot", metavar="SVG", help="also draw the timeline to this file")
    args = parser.parse_args()
    backend, options = ("asyncio", {"use_uvloop": True}) if args.loop == "uvloop" else (args.loop, {})
    anyio.run(main, args.loop, args.plot, backend=backend, backend_options=options)
