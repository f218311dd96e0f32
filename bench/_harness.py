"""The benchmark harness: interleaved rounds, robust statistics, Markdown and JSON reports.

Every scenario module (``scenario_*.py``) builds :class:`Candidate` objects, one
per way of doing the same job (asyncbridge and each peer), and hands them to
:func:`measure`. ``measure`` runs them round by round, each round in a
different (rotated) order, so slow drift of the machine (thermal, other load,
page cache) hits every candidate alike instead of whichever ran last. A
candidate's one sample is a dict of metrics (``{"us": 71.3}``); a
:class:`Table` shows one metric of every candidate as median, spread and ratio
to a named baseline.

A candidate whose API does not exist yet (``NotImplementedError``, a missing
name) raises :class:`NotAvailable`; its row says so instead of a number, and
it is not retried in later rounds.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import importlib.util
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

Sample = dict[str, float]
Backend = Literal["asyncio", "uvloop", "trio"]
BACKENDS: tuple[Backend, ...] = ("asyncio", "uvloop", "trio")

PACKAGES = (
    "asyncbridge",
    "anyio",
    "trio",
    "uvloop",
    "asgiref",
    "asyncer",
    "starlette",
    "loky",
    "pebble",
    "blockbuster",
    "aiodebug",
    "psutil",
)


class NotAvailable(Exception):
    """This candidate cannot run here: its API is not built yet, or a peer is missing."""


def unavailable_if_missing(exc: BaseException) -> NotAvailable:
    """Describe why an asyncbridge API is not there yet, for the row's note."""
    return NotAvailable(f"not yet available ({type(exc).__name__}: {exc})")


# -- running things ----------------------------------------------------------


def run_loop(backend: Backend, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main()`` in a fresh event loop of ``backend`` and return its result.

    A fresh loop per sample keeps one candidate's leftovers (default executor,
    idle worker threads bound to the loop, pending callbacks) out of the next
    one's numbers. The asyncio path avoids the event-loop policy functions
    that Python 3.14 deprecates.
    """
    if backend == "trio":
        import trio

        result: T = trio.run(main)  # type: ignore[arg-type]
        return result
    if backend == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())  # type: ignore[arg-type]
    finally:
        try:
            _cancel_all_tasks(loop)  # as asyncio.run does: lets anyio stop its process workers
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def use_asyncbridge_from(rev: str) -> str:
    """Make ``import asyncbridge`` load ``src/`` as of git revision ``rev``, here and in children.

    The checkout's ``src/`` may hold someone's work in progress; measuring a
    commit (``HEAD``, a tag, the commit before a change) makes a run
    repeatable and lets two revisions be compared. Returns the short hash.
    ``rev`` may also be a directory that holds an ``asyncbridge`` package (a
    prototype to measure); it is used as it is.
    """
    if (Path(rev) / "asyncbridge" / "__init__.py").is_file():
        src = str(Path(rev).resolve())
        sys.path.insert(0, src)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH", "")]))
        os.environ["ASYNCBRIDGE_BENCH_SRC"] = src
        return src
    commit = subprocess.run(
        ["git", "rev-parse", "--short", rev], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.strip()
    target = Path(tempfile.mkdtemp(prefix=f"asyncbridge-{commit}-"))
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    archive = subprocess.run(
        ["git", "archive", commit, "src/asyncbridge"], capture_output=True, cwd=ROOT, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        try:
            tar.extractall(target, filter="data")
        except TypeError:  # Python < 3.10.12 has no filter; our own archive is trusted
            tar.extractall(target)
    src = str(target / "src")
    if "asyncbridge" in sys.modules:
        raise RuntimeError("use_asyncbridge_from() must run before asyncbridge is imported")
    sys.path.insert(0, src)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH", "")]))
    os.environ["ASYNCBRIDGE_BENCH_SRC"] = commit
    return commit


def run_child(script: Path, *args: str, timeout: float = 120.0) -> Sample:
    """Run ``script --child ARGS`` in a fresh interpreter and return the JSON it prints last.

    For what one process cannot measure twice: cold starts, peak RSS.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH_DIR), env.get("PYTHONPATH", "")]))
    proc = subprocess.run(
        [sys.executable, str(script), "--child", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"child {script.name} {' '.join(args)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(lines[-1])
    if "unavailable" in out:
        raise NotAvailable(str(out["unavailable"]))
    return {key: float(value) for key, value in out.items()}


CAN_PIN = hasattr(os, "sched_setaffinity")  # Linux: the pinned tables can be measured


def pin_to_one_cpu() -> None:
    """Pin this process to one CPU; threads and child processes started afterwards inherit it.

    For the pinned tables: a round trip's thread wake-ups become plain context
    switches, without the VM's cross-CPU wake-up latency (see bench/README.md).
    """
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def child_main(argv: Sequence[str], handler: Callable[..., Sample]) -> None:
    """The child side of :func:`run_child`: call ``handler(*args)``, print its JSON."""
    try:
        result: dict[str, object] = dict(handler(*argv))
    except NotAvailable as exc:
        result = {"unavailable": str(exc)}
    print(json.dumps(result), flush=True)


# -- measuring ---------------------------------------------------------------


@dataclass
class Candidate:
    """One way of doing the job under test; ``sample()`` measures it once."""

    name: str
    sample: Callable[[], Sample]
    note: str = ""
    reference: bool = False  # a yardstick (e.g. the minimal hand-off), not a peer


@dataclass
class Row:
    """Everything measured for one candidate."""

    name: str
    samples: list[Sample] = field(default_factory=list)
    note: str = ""
    reference: bool = False
    unavailable: str | None = None

    def values(self, metric: str) -> list[float]:
        return [s[metric] for s in self.samples if metric in s]


@dataclass
class Config:
    """How a run was asked for: rounds, speed, which backends, where progress goes."""

    progress: Progress
    quick: bool = False
    rounds: int | None = None
    backends: tuple[Backend, ...] = BACKENDS

    def rounds_or(self, default: int) -> int:
        """``--rounds`` if given; else the scenario's default (a third of it with ``--quick``)."""
        if self.rounds is not None:
            return self.rounds
        return max(2, default // 3) if self.quick else default

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass
class Progress:
    """Prints one line per round to stderr, so a long run shows it is alive."""

    enabled: bool = True

    def __call__(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)


def measure(
    label: str,
    candidates: Sequence[Candidate],
    rounds: int,
    progress: Progress,
    *,
    show: str | None = None,
) -> list[Row]:
    """Sample every candidate once per round, in a rotated order each round.

    Rotation puts every candidate in every position equally often (when
    ``rounds`` is a multiple of their number), so neither the first slot after
    a pause nor the last one in a hot machine favours anyone. A garbage
    collection before each sample keeps one candidate's garbage from being
    paid for by the next.
    """
    rows = {c.name: Row(c.name, note=c.note, reference=c.reference) for c in candidates}
    count = len(candidates)
    for r in range(rounds):
        start = time.perf_counter()
        order = [candidates[(r + i) % count] for i in range(count)] if count else []
        for cand in order:
            row = rows[cand.name]
            if row.unavailable is not None:
                continue
            gc.collect()
            try:
                row.samples.append(cand.sample() | {"round": r})
            except NotAvailable as exc:
                row.unavailable = str(exc)
            except NotImplementedError as exc:  # an asyncbridge API still being built
                row.unavailable = str(unavailable_if_missing(exc))
            except Exception as exc:  # one broken candidate must not lose the whole run
                row.unavailable = f"failed: {type(exc).__name__}: {exc}"[:300]
                progress(f"  [{label}] {cand.name} failed: {exc!r}")
        took = time.perf_counter() - start
        summary = ""
        if show is not None:
            summary = ", ".join(f"{row.name}={row.samples[-1][show]:.4g}" for row in rows.values() if row.samples)
        progress(f"  [{label}] round {r + 1}/{rounds} ({took:.1f} s) {summary}")
    return [rows[c.name] for c in candidates]


# -- reporting ---------------------------------------------------------------


@dataclass
class Table:
    """One metric of a set of rows, shown as median, spread and ratio to baselines."""

    title: str
    rows: list[Row]
    metric: str
    unit: str
    better: Literal["lower", "higher"]
    baselines: tuple[str, ...] = ()
    description: str = ""
    digits: int = 1

    def stats(self, name: str) -> Stats | None:
        for row in self.rows:
            if row.name == name:
                values = row.values(self.metric)
                return Stats.of(values) if values else None
        return None

    def ratio(self, name: str, baseline: str) -> float | None:
        """The median over rounds of this row's sample / the baseline's in the same round.

        Pairing by round cancels most of this machine's drift (its speed
        wanders by 10-50% over seconds), which a ratio of medians would not.
        Without common rounds, fall back to the ratio of the medians.
        """
        mine, base = self._row(name), self._row(baseline)
        if mine is None or base is None:
            return None
        base_by_round = {s["round"]: s[self.metric] for s in base.samples if self.metric in s}
        paired = [
            s[self.metric] / base_by_round[s["round"]]
            for s in mine.samples
            if self.metric in s and base_by_round.get(s["round"])
        ]
        if paired:
            return statistics.median(paired)
        a, b = self.stats(name), self.stats(baseline)
        if a is None or b is None or b.median == 0:
            return None
        return a.median / b.median

    def _row(self, name: str) -> Row | None:
        return next((row for row in self.rows if row.name == name), None)

    def to_markdown(self) -> str:
        direction = "lower is better" if self.better == "lower" else "higher is better"
        head = [f"### {self.title}", ""]
        if self.description:
            head += [self.description, ""]
        cols = ["candidate", f"median ({self.unit})", "IQR", "min - max", "n"]
        cols += [f"vs {b}" for b in self.baselines]
        cols.append("note")
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for row in self.rows:
            name = f"*{row.name}* (reference)" if row.reference else row.name
            values = row.values(self.metric)
            if not values:
                why = row.unavailable or "no sample"
                cells = [name, "n/a", "", "", "0", *[""] * len(self.baselines), why]
            else:
                st = Stats.of(values)
                fmt = self._fmt
                cells = [
                    name,
                    fmt(st.median),
                    f"{fmt(st.q1)} - {fmt(st.q3)}",
                    f"{fmt(st.low)} - {fmt(st.high)}",
                    str(len(values)),
                ]
                for base in self.baselines:
                    r = self.ratio(row.name, base)
                    cells.append("" if r is None else f"{r:.2f}")
                cells.append(row.note)
            lines.append("| " + " | ".join(cells) + " |")
        ratio_note = (
            f"Ratios: median over rounds of (this row / the baseline in the same round); {direction}."
            if self.baselines
            else ""
        )
        return "\n".join([*head, *lines, "", ratio_note]).rstrip() + "\n"

    def _fmt(self, value: float) -> str:
        return f"{value:,.{self.digits}f}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "title": self.title,
            "metric": self.metric,
            "unit": self.unit,
            "better": self.better,
            "baselines": list(self.baselines),
            "rows": [],
        }
        for row in self.rows:
            values = row.values(self.metric)
            entry: dict[str, Any] = {"name": row.name, "reference": row.reference, "note": row.note}
            if values:
                st = Stats.of(values)
                entry |= {
                    "median": st.median,
                    "q1": st.q1,
                    "q3": st.q3,
                    "min": st.low,
                    "max": st.high,
                    "samples": values,
                    "ratios": {b: self.ratio(row.name, b) for b in self.baselines},
                }
            else:
                entry["unavailable"] = row.unavailable or "no sample"
            out["rows"].append(entry)
        return out


@dataclass(frozen=True)
class Stats:
    median: float
    q1: float
    q3: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        ordered = sorted(values)
        if len(ordered) >= 2:
            q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
        else:
            q1 = q3 = ordered[0]
        return cls(statistics.median(ordered), q1, q3, ordered[0], ordered[-1])


@dataclass
class Check:
    """One target of the issue, and whether this run meets it (None: cannot tell yet)."""

    target: str
    measured: str
    met: bool | None


@dataclass
class Section:
    """What one scenario contributes to the report."""

    name: str
    title: str
    intro: str = ""
    tables: list[Table] = field(default_factory=list)
    markdown: list[str] = field(default_factory=list)  # extra free-form blocks (e.g. detection matrix)
    checks: list[Check] = field(default_factory=list)
    seconds: float = 0.0
    others: float | None = None  # share of the CPUs other processes used meanwhile

    def to_markdown(self) -> str:
        parts = [f"## {self.title}", ""]
        if self.intro:
            parts += [self.intro, ""]
        parts += [t.to_markdown() for t in self.tables]
        parts += self.markdown
        busy = ""
        if self.others is not None:
            busy = f" Other processes used {100 * self.others:.0f}% of the CPUs meanwhile."
            if self.others > 0.1:
                busy += " Treat its numbers with care; CPU-bound ones (speedups) most of all."
        parts.append(f"_Scenario time: {self.seconds:.0f} s.{busy}_\n")
        return "\n".join(parts)


def ratio_check(target: str, table: Table, name: str, baseline: str, limit: float, *, at_least: bool) -> Check:
    """A target stated as 'name is at least/at most ``limit`` times baseline'."""
    r = table.ratio(name, baseline)
    if r is None:
        why = next((row.unavailable for row in table.rows if row.name == name and row.unavailable), None)
        return Check(target, why or "not measured", None)
    met = r >= limit if at_least else r <= limit
    return Check(target, f"{r:.2f}x ({table.title})", met)


class CpuWatch:
    """How much of the machine others used while we ran: a busy machine makes numbers noisy.

    From ``/proc/stat`` (all CPUs, Linux) minus this process's and its
    waited-for children's CPU time. ``steal`` is time the hypervisor gave to
    other guests.
    """

    def __init__(self) -> None:
        self._start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float, float]:
        try:
            fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        except (OSError, ValueError):
            return (0.0, 0.0, 0.0, 0.0)
        hz = os.sysconf("SC_CLK_TCK")
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        total = sum(fields) / hz
        busy = (user + nice + system + irq + softirq) / hz
        t = os.times()
        ours = t.user + t.system + t.children_user + t.children_system
        return total, busy, ours, steal / hz

    def shares(self) -> dict[str, float]:
        """Fractions of all CPUs' time since start: used by others, and stolen."""
        total0, busy0, ours0, steal0 = self._start
        total1, busy1, ours1, steal1 = self._sample()
        span = total1 - total0
        if span <= 0:
            return {"others": 0.0, "steal": 0.0}
        others = max(0.0, (busy1 - busy0) - (ours1 - ours0)) / span
        return {"others": others, "steal": (steal1 - steal0) / span}


def wait_for_quiet(limit: float, progress: Progress, *, busy: float = 0.15, window: float = 2.0) -> float:
    """Wait up to ``limit`` seconds until other processes use under ``busy`` of the CPUs.

    This machine is shared (test suites, other benchmarks): starting a
    scenario in a quiet moment makes its numbers far less noisy. Returns the
    share others used in the last window.
    """
    deadline = time.monotonic() + limit
    while True:
        watch = CpuWatch()
        time.sleep(window)
        others = watch.shares()["others"]
        if others < busy or time.monotonic() >= deadline:
            return others
        progress(f"  (waiting for a quiet machine: others use {100 * others:.0f}% of the CPUs)")


def machine_info() -> dict[str, Any]:
    """What a reader needs to compare this run with another one."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True, cwd=ROOT
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    pinned = os.environ.get("ASYNCBRIDGE_BENCH_SRC")
    if pinned:
        commit, dirty = pinned, False  # --src: asyncbridge comes from that commit, whatever src/ holds
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "git_commit": commit + ("+dirty src" if dirty else ""),
        "asyncbridge_from": _origin("asyncbridge"),
        "packages": versions,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    return info


def _origin(module: str) -> str | None:
    spec = importlib.util.find_spec(module)
    return None if spec is None else spec.origin


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def render_report(sections: Sequence[Section], info: Mapping[str, Any], command: str, total_seconds: float) -> str:
    pkgs = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    load = info.get("cpu_used_elsewhere")
    busy = ""
    if load:
        busy = (
            f"While it ran, other processes used {100 * load['others']:.0f}% of the machine's CPU time "
            f"and the hypervisor stole {100 * load['steal']:.0f}%"
            + (": numbers are noisier than on a quiet machine." if load["others"] > 0.05 else ".")
        )
    lines = [
        "# asyncbridge benchmarks: latest results",
        "",
        f"Command: `{command}` (total {total_seconds:.0f} s).",
        "",
        f"Machine: {info['cpu_count']} CPUs ({info['processor']}), {info['platform']}, "
        f"Python {info['python']}; asyncbridge at {info['git_commit']}; {info['date']}. {busy}",
        "",
        f"Packages: {pkgs}.",
        "",
        "Each candidate runs once per round, rounds interleave all candidates in rotated order, and",
        "every event-loop measurement gets a fresh loop. Median over rounds; IQR and min - max show",
        "the spread.",
        "",
    ]
    checks = [c for s in sections for c in s.checks]
    if checks:
        lines += ["## Targets (issue 6)", "", "| target | measured | met |", "|---|---|---|"]
        for c in checks:
            met = "not yet measurable" if c.met is None else ("yes" if c.met else "**no**")
            lines.append(f"| {c.target} | {c.measured} | {met} |")
        lines.append("")
    lines += [s.to_markdown() for s in sections]
    return "\n".join(lines)


def _cell(table: Table, row: Row | None, *, ratio: bool = True) -> str:
    if row is None:
        return ""
    med = table._fmt(Stats.of(row.values(table.metric)).median)
    r = table.ratio(row.name, table.baselines[0]) if ratio else None
    return f"{row.name}: {med}" + ("" if r is None else f" ({r:.2f}x)")


def summary_table(sections: Sequence[Section]) -> str:
    """One line per measurement: asyncbridge, the baseline, the best peer and the reference."""
    lines = [
        "| measurement | asyncbridge | baseline | best peer | reference |",
        "|---|---|---|---|---|",
    ]
    for section in sections:
        for table in section.tables:
            rows = [r for r in table.rows if r.values(table.metric)]
            ours = next((r for r in rows if r.name.startswith("asyncbridge")), None)
            if ours is None or not table.baselines:
                continue
            base = table.baselines[0]
            peers = [r for r in rows if not r.name.startswith("asyncbridge") and not r.reference]
            pick = min if table.better == "lower" else max
            best = pick(peers, key=lambda r: Stats.of(r.values(table.metric)).median, default=None)
            refs = [r for r in rows if r.reference]
            ref = pick(refs, key=lambda r: Stats.of(r.values(table.metric)).median, default=None)

            base_row = next((r for r in rows if r.name == base), None)
            cells = [_cell(table, ours), _cell(table, base_row, ratio=False), _cell(table, best), _cell(table, ref)]
            lines.append(f"| {table.title} ({table.unit}, {table.better} is better) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def report_json(sections: Sequence[Section], info: Mapping[str, Any], command: str) -> dict[str, Any]:
    return {
        "command": command,
        "machine": dict(info),
        "targets": [{"target": c.target, "measured": c.measured, "met": c.met} for s in sections for c in s.checks],
        "scenarios": [
            {
                "name": s.name,
                "title": s.title,
                "seconds": s.seconds,
                "cpu_used_elsewhere": s.others,
                "tables": [t.to_json() for t in s.tables],
                "markdown": s.markdown,
            }
            for s in sections
        ],
    }
