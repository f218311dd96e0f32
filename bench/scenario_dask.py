"""Scenario 8: DaskExecutor against ProcessExecutor, side by side on this machine.

Part of ``bench/run.py`` (``python3 dev.py bench --scenario dask``; it needs
the ``dask`` extra, and starts its own cluster), or on its own::

    python bench/scenario_dask.py [--rounds N] [--backend asyncio|trio ...]

Both executors get two workers: ``ProcessExecutor(2)``, and a
``distributed.LocalCluster`` of two worker processes with one thread each on
127.0.0.1, used through ``DaskExecutor(cluster.scheduler_address)``. For each
event loop, three measurements, the two executors alternating round by round
(so drift of the machine hits both alike), median of the rounds:

- overhead: sequential awaits of a trivial call (``echo``), mean time per call
  after warm-up, in ms;
- small calls: 1,000 concurrent trivial calls, in calls/s;
- 50 ms CPU calls: 16 concurrent calls of a pure-Python loop calibrated to
  about 50 ms here, in calls/s (two workers can do at most 2 / 0.05 = 40/s).

The ratio column is Dask / Process: above 1 means Dask takes longer
(overhead) or does more (throughput), as labelled. A third column is the
reference for what Dask itself costs: the same work through Dask's own
synchronous client from a plain thread (``submit(...).result()`` in sequence,
``gather`` of concurrent submits), and the last ratio is DaskExecutor's cost
over it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _work, importable by both executors' workers

from _harness import Config, Row, Section, Table
from _work import calibrate, echo, spin

NAME = "dask"
TITLE = "8. DaskExecutor against ProcessExecutor (2 workers each)"

SEQUENTIAL_CALLS = 200
SMALL_CALLS = 1000
CPU_CALLS = 16
CPU_SECONDS = 0.05
WORKERS = 2


async def overhead(run: Callable[..., Any]) -> float:
    """Mean ms per sequential await of a trivial call."""
    for i in range(20):
        await run(echo, i)
    start = time.perf_counter()
    for i in range(SEQUENTIAL_CALLS):
        await run(echo, i)
    return (time.perf_counter() - start) / SEQUENTIAL_CALLS * 1000


async def concurrent(run: Callable[..., Any], fn: Callable[..., Any], arg: int, calls: int) -> float:
    """Calls/s for ``calls`` concurrent awaits of ``fn(arg)``."""
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            tg.start_soon(run, fn, arg)
    return calls / (time.perf_counter() - start)


async def one_round(run: Callable[..., Any], iterations: int) -> dict[str, float]:
    return {
        "overhead_ms": await overhead(run),
        "small_per_s": await concurrent(run, echo, 1, SMALL_CALLS),
        "cpu_per_s": await concurrent(run, spin, iterations, CPU_CALLS),
    }


def raw_round(client: Any, iterations: int) -> dict[str, float]:
    """The reference: Dask's own synchronous client, from a plain thread (what a sync program does)."""
    for i in range(20):
        client.submit(echo, i, pure=False).result()
    start = time.perf_counter()
    for i in range(SEQUENTIAL_CALLS):
        client.submit(echo, i, pure=False).result()
    overhead_ms = (time.perf_counter() - start) / SEQUENTIAL_CALLS * 1000
    rates = []
    for fn, arg, calls in ((echo, 1, SMALL_CALLS), (spin, iterations, CPU_CALLS)):
        start = time.perf_counter()
        client.gather([client.submit(fn, arg, pure=False) for _ in range(calls)])
        rates.append(calls / (time.perf_counter() - start))
    return {"overhead_ms": overhead_ms, "small_per_s": rates[0], "cpu_per_s": rates[1]}


async def measure(backend: str, address: str, rounds: int, iterations: int) -> dict[str, dict[str, list[float]]]:
    import distributed

    from asyncbridge import ProcessExecutor
    from asyncbridge.dask import DaskExecutor

    samples: dict[str, dict[str, list[float]]] = {"process": {}, "dask": {}, "raw": {}}
    client = await anyio.to_thread.run_sync(lambda: distributed.Client(address, set_as_default=False))
    try:
        async with ProcessExecutor(WORKERS) as processes, DaskExecutor(address) as dask:
            runs: dict[str, Callable[[], Any]] = {
                "process": lambda: one_round(processes.run, iterations),
                "dask": lambda: one_round(dask.run, iterations),
                "raw": lambda: anyio.to_thread.run_sync(raw_round, client, iterations),
            }
            for run in runs.values():  # warm up: workers started, modules imported
                await run()
            for r in range(rounds):
                order = list(runs)[r % 3 :] + list(runs)[: r % 3]
                for name in order:
                    for metric, value in (await runs[name]()).items():
                        samples[name].setdefault(metric, []).append(value)
                    samples[name].setdefault("round", []).append(r)
                print(f"  {backend}: round {r + 1}/{rounds} done", file=sys.stderr)
    finally:
        await anyio.to_thread.run_sync(client.close)
    return samples


ROWS = [
    ("overhead_ms", "overhead of one trivial call (ms, lower is better)"),
    ("small_per_s", f"{SMALL_CALLS:,} concurrent trivial calls (calls/s)"),
    (
        "cpu_per_s",
        f"{CPU_CALLS} concurrent {CPU_SECONDS * 1000:.0f} ms CPU calls (calls/s; ideal {WORKERS / CPU_SECONDS:.0f})",
    ),
]


def table(results: dict[str, dict[str, dict[str, list[float]]]]) -> str:
    lines = [
        "| loop | measurement | ProcessExecutor(2) | DaskExecutor (2 workers) | Dask / Process "
        "| Dask's own sync client (reference) | DaskExecutor / Dask's client |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for backend, samples in results.items():
        for metric, label in ROWS:
            process = statistics.median(samples["process"][metric])
            dask = statistics.median(samples["dask"][metric])
            raw = statistics.median(samples["raw"][metric])
            digits = 2 if metric == "overhead_ms" else 0
            lines.append(
                f"| {backend} | {label} | {process:,.{digits}f} | {dask:,.{digits}f} | {dask / process:.2f}x "
                f"| {raw:,.{digits}f} | {dask / raw:.2f}x |"
            )
    return "\n".join(lines)


PROCESS = "asyncbridge ProcessExecutor(2).run"
DASK = "asyncbridge DaskExecutor(2 workers).run"
RAW = "Dask's own sync client, from a plain thread"


def rows_of(samples: dict[str, dict[str, list[float]]]) -> list[Row]:
    """The harness's rows (one sample dict per round) from this scenario's per-metric lists."""
    rows = []
    for key, name in (("dask", DASK), ("process", PROCESS), ("raw", RAW)):
        metrics = samples[key]
        rounds = len(metrics["round"])
        row = Row(name, reference=key == "raw")
        row.samples = [{metric: values[i] for metric, values in metrics.items()} for i in range(rounds)]
        rows.append(row)
    return rows


def run(cfg: Config) -> Section:
    rounds = cfg.rounds_or(5)
    section = Section(
        NAME,
        TITLE,
        intro=(
            f"`ProcessExecutor({WORKERS})` against `DaskExecutor` on a `distributed.LocalCluster` of {WORKERS} "
            f"single-threaded worker processes on 127.0.0.1, {rounds} rounds alternating the two (and Dask's own "
            "synchronous client as the reference for what Dask itself costs). Overhead: mean of "
            f"{SEQUENTIAL_CALLS} sequential trivial calls; throughput: {SMALL_CALLS:,} concurrent trivial calls, and "
            f"{CPU_CALLS} concurrent calls of {CPU_SECONDS * 1000:.0f} ms of pure Python "
            f"(at most {WORKERS / CPU_SECONDS:.0f}/s on {WORKERS} workers)."
        ),
    )
    backends = [b for b in ("asyncio", "trio") if b in cfg.backends]
    try:
        import distributed
    except ImportError:
        section.intro += " (Skipped: `distributed` is not installed; `pip install asyncbridge[dask]`.)"
        return section
    if not backends:
        section.intro += " (Skipped: it runs on asyncio and trio.)"
        return section
    iterations = calibrate(CPU_SECONDS)
    with distributed.LocalCluster(
        n_workers=WORKERS, processes=True, threads_per_worker=1, dashboard_address=":0", host="127.0.0.1"
    ) as cluster:
        for backend in backends:
            cfg.progress(f"  [dask] {backend}")
            samples = anyio.run(measure, backend, cluster.scheduler_address, rounds, iterations, backend=backend)
            rows = rows_of(samples)
            titles = {
                "overhead_ms": ("Overhead of one trivial call", "ms per call", "lower", 2),
                "small_per_s": (f"{SMALL_CALLS:,} concurrent trivial calls", "calls/s", "higher", 0),
                "cpu_per_s": (
                    f"{CPU_CALLS} concurrent {CPU_SECONDS * 1000:.0f} ms CPU calls (ideal {WORKERS / CPU_SECONDS:.0f}/s)",
                    "calls/s",
                    "higher",
                    1,
                ),
            }
            for metric, (title, unit, better, digits) in titles.items():
                section.tables.append(
                    Table(f"Dask: {title} on {backend}", rows, metric, unit, better, (PROCESS, RAW), digits=digits)
                )
    return section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--backend", action="append", choices=["asyncio", "trio"])
    args = parser.parse_args()
    backends: list[str] = args.backend or ["asyncio", "trio"]

    import distributed

    iterations = calibrate(CPU_SECONDS)
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    with distributed.LocalCluster(
        n_workers=WORKERS, processes=True, threads_per_worker=1, dashboard_address=":0", host="127.0.0.1"
    ) as cluster:
        for backend in backends:
            results[backend] = anyio.run(
                measure, backend, cluster.scheduler_address, args.rounds, iterations, backend=backend
            )
    print(f"\nPython {sys.version.split()[0]}, distributed {distributed.__version__}, {args.rounds} rounds, medians\n")
    print(table(results))


if __name__ == "__main__":
    main()
