"""The guides' example programs (examples/guides/): each one runs and prints what its guide shows.

Every program is run as its guide tells readers to run it, in a subprocess of
this interpreter with the worktree's package importable, under asyncio, uvloop
and trio where it is async. The guide pages embed the programs whole with
``--8<--`` (pymdownx.snippets), so the code on the site is the code run here.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GUIDES = ROOT / "examples" / "guides"
LOOPS = ["asyncio", "uvloop", "trio"]


def run(program: str, *args: str, timeout: float = 30) -> str:
    """Run examples/guides/<program> as a reader would; return its stdout, failing on a non-zero exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(GUIDES / program), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"{program} {args} exited with {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def embedded_programs(page: str) -> list[str]:
    return re.findall(r'^[ \t]*--8<-- "examples/guides/([\w.]+?)(?::\w+)?"$', (ROOT / "docs" / page).read_text(), re.M)


@pytest.mark.parametrize("page", ["choosing.md", "migrating.md", "trio.md"])
def test_every_program_a_guide_embeds_exists_and_is_tested(page: str) -> None:
    """A guide's --8<-- includes name programs that exist and that this file runs."""
    programs = embedded_programs(page)
    assert programs, f"docs/{page} embeds no example program"
    tested = (Path(__file__)).read_text()
    for program in programs:
        assert (GUIDES / program).is_file(), program
        assert f'"{program}"' in tested, f"{program} is embedded in docs/{page} but no test runs it"


# --- docs/choosing.md ---------------------------------------------------------------------------------------

SPEEDUP = re.compile(r"^(?P<label>.+?)\s+1 thread [\d.]+ s  2 threads [\d.]+ s  speedup (?P<x>[\d.]+)x$")


def others_share(busy_before: float, children_before: float, started: float) -> float:
    """The share of all CPUs that processes other than this test's children used since the readings."""
    import psutil

    times = psutil.cpu_times()
    busy = times.user + times.nice + times.system + sum(getattr(times, n, 0.0) for n in ("irq", "softirq", "steal"))
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    ours = usage.ru_utime + usage.ru_stime - children_before
    wall = time.perf_counter() - started
    return max(busy - busy_before - ours, 0.0) / (wall * (os.cpu_count() or 1))


def test_gil_release_shows_hashing_scales_on_threads_and_python_does_not() -> None:
    """sha256 of large buffers runs faster on 2 threads; a pure-Python loop does not (the GIL).

    A speedup says something only while no other program takes the second CPU:
    runs during which others used a quarter of the machine or more do not count,
    and if none was quiet the test is skipped rather than judged on their load."""
    import psutil

    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    seen: list[str] = []
    quiet: list[float] = []
    for _attempt in range(5):
        times = psutil.cpu_times()
        busy = times.user + times.nice + times.system + sum(getattr(times, n, 0.0) for n in ("irq", "softirq", "steal"))
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        lines = run("gil_release.py").splitlines()
        share = others_share(busy, usage.ru_utime + usage.ru_stime, started)
        assert len(lines) == 2, lines
        found = [m for line in lines if (m := SPEEDUP.match(line))]
        assert [m["label"] for m in found] == ["hashlib.sha256, 32 MiB buffers", "pure-Python loop"], lines
        hashing, python = (float(m["x"]) for m in found)
        assert python < 1.3, lines  # two threads of bytecode never beat one by much under the GIL
        seen.append(f"sha256 {hashing}x, Python {python}x, others used {share:.0%}")
        if share < 0.25:
            quiet.append(hashing)
            if hashing > 1.4:
                return
            if len(quiet) == 2:
                pytest.fail(f"hashing did not scale on 2 threads in two quiet runs: {seen}")
    pytest.skip(f"other programs kept the second CPU busy during the runs: {seen}")


@pytest.mark.parametrize("loop", LOOPS)
def test_choose_runs_every_row_of_the_table(loop: str) -> None:
    """Each row's asyncbridge call works: threads overlap, processes count, a crash is survived, one thread."""
    lines = run("choose.py", loop).splitlines()
    blocking = re.fullmatch(r"blocking I/O:  10 calls of time.sleep\(0.2\) at once took ([\d.]+) s", lines[0])
    assert blocking, lines
    assert float(blocking[1]) < 1.0, lines  # 10 overlapping sleeps, not 2 s of them in a row
    assert lines[1:] == [
        "pure Python:   2262 primes below 20,000, counted in a worker process",
        "C extension:   sha256 of 32 MiB, in a thread: 05f052c8f6da8ee5...",
        "crash-prone:   the worker died (signal 11); the next call works: 4",
        "one thread:    3 sqlite3 calls on 1 thread, 2 rows, 8 other tasks using the pool",
        "beyond one machine: 2262 primes below 20,000, counted on a Dask worker",
    ]


# --- docs/migrating.md --------------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_migrating_asyncio_passes_keywords_and_context_through_each_replacement(loop: str) -> None:
    """run_in_executor, the recipe and to_thread replacements: keyword arguments and the caller's context arrive."""
    assert run("migrating_asyncio.py", loop).splitlines() == [
        "run_in_executor -> a=1 (request 42)",
        "recipe          -> b=2 (request 42)",
        "to_thread       -> c=3 (request 42)",
    ]


@pytest.mark.parametrize("loop", LOOPS)
def test_migrating_asgiref_replacements_work_both_ways_and_pin_one_thread(loop: str) -> None:
    """async_wrap for sync_to_async, sync_wrap for async_to_sync (from a script and from a worker), pinned_thread."""
    assert run("migrating_asgiref.py", loop).splitlines() == [
        "from a script    -> sent 'hello from a script'",
        "sync_to_async    -> hello, world",
        "async_to_sync    -> sent 'job 1 done'",
        "thread_sensitive -> 2 rows, all three calls on one thread's connection",
    ]


CANCELLED = re.compile(
    r"cancellation     -> a 0.05 s timeout ends the await after (?P<abandoned>[\d.]+) s by default,\n"
    r"                    after (?P<waited>[\d.]+) s \(the 0.2 s call's end\) with abandon_on_cancel=False"
)


@pytest.mark.parametrize("loop", LOOPS)
def test_migrating_anyio_replacements_and_both_cancellation_policies(loop: str) -> None:
    """to_thread with keywords and limit, to_process, sync_wrap from a worker; abandon vs wait on cancel."""
    out = run("migrating_anyio.py", loop)
    lines = out.splitlines()
    assert lines[:3] == [
        "to_thread        -> cat.png@200px, dog.png@64px",
        "to_process       -> 2262 primes below 20,000",
        "from_thread      -> total 105",
    ]
    cancelled = CANCELLED.search(out)
    assert cancelled, out
    assert float(cancelled["abandoned"]) < 0.15, out  # the default does not wait for the blocked call
    assert float(cancelled["waited"]) >= 0.15, out  # abandon_on_cancel=False waits for the 0.2 s call


# --- docs/trio.md -------------------------------------------------------------------------------------------


def test_trio_app_runs_threads_processes_dask_and_sync_wrap_under_trio() -> None:
    """Under trio: three thread paths, check_cancelled stops an abandoned thread, a cancel kills a spinning worker."""
    lines = run("trio_app.py").splitlines()
    assert lines[:3] == [
        "sync_wrap: {'alpha': 5, 'beta': 4} (plain code into a background trio run)",
        "threads:   the same size three ways: True",
        "cancel:    deadline hit: True; the thread stopped within 5 s: True",
    ]
    processes = re.fullmatch(
        r"processes: 60 s of CPU cancelled after ([\d.]+) s; then \[0, 1, 4, 9\]; to_process: 144", lines[3]
    )
    assert processes, lines
    assert float(processes[1]) < 3.0, lines  # the deadline (0.5 s) ended it, not the minute of spinning
    assert lines[4:] == ["dask:      49"]


# --- docs/processes.md --------------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_processes_runs_to_process_a_pool_of_its_own_and_survives_a_crash(loop: str) -> None:
    """to_process hashes in a worker; run, an async_wrap'd function and submit on a pool; a worker that
    dies fails only its call, logged with its pid and exit code, and the next call works."""
    lines = run("processes.py", loop).splitlines()
    assert lines[0] == "to_process: the sha256 of this file, from a worker: True", lines
    assert lines[1] == "pool:       run -> 5 values, total 15; resize -> b'ab'; submit -> 5 values, total 15"
    assert re.fullmatch(r"parser died: pid \d+, exit code 3, signal None", lines[2]), lines
    assert lines[3:] == ["crash:      the next call works: 4"]


# --- docs/threads.md ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_default_executor_of_100_threads_runs_100_blocking_calls_at_once(loop: str) -> None:
    """After set_default_executor(ThreadExecutor(100)), 100 sleeps of 0.3 s overlap: well under the
    0.9 s that the stock 40 threads would take (three rounds)."""
    for _attempt in range(3):  # a loaded machine can delay thread starts
        lines = run("default_executor.py", loop).splitlines()
        assert lines[0] == "default executor: 100 threads", lines
        took = re.fullmatch(r"100 calls of time.sleep\(0.3\) at once took ([\d.]+) s", lines[1])
        assert took, lines
        if float(took[1]) < 0.8:
            break
    else:
        pytest.fail(f"100 calls on 100 threads took three tries over 0.8 s: {lines}")


# --- docs/migrating.md, the "before" side ---------------------------------------------------------------------


def test_migrating_before_runs_each_tools_code_as_the_page_shows_it() -> None:
    """The code migrated from (run_in_executor, asyncio.to_thread, asgiref, anyio, Starlette) runs as it stands."""
    assert run("migrating_before.py").splitlines() == [
        "run_in_executor   -> a=1",
        "asyncio.to_thread -> c=3",
        "sync_to_async     -> hello, world",
        "async_to_sync     -> sent 'job 1 done'",
        "anyio             -> cat.png@200px, dog.png@64px",
        "                     2262 primes below 20,000; total 105",
        "run_in_threadpool -> cat.png@200px",
    ]


# --- every page ---------------------------------------------------------------------------------------------

INCLUDE = re.compile(r'^[ \t]*--8<-- "(?P<path>[^":]+)(?::(?P<section>\w+))?"[ \t]*$', re.M)


def test_every_include_in_the_docs_names_a_file_and_section_that_exist_and_a_test_runs() -> None:
    """Every --8<-- include of README.md and docs/ names an existing file (and section); every program
    included from examples/ is named by a test that runs it, so what the pages show is what runs."""
    tests_text = "\n".join(path.read_text() for path in Path(__file__).parent.glob("test_*.py"))
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    includes = [(page, m) for page in pages for m in INCLUDE.finditer(page.read_text())]
    assert len(includes) > 20
    problems: list[str] = []
    for page, include in includes:
        where = f"{page.relative_to(ROOT)}: {include[0].strip()}"
        path = ROOT / include["path"]
        if not path.is_file():
            problems.append(f"{where}: no such file")
            continue
        if include["section"] and f"# --8<-- [start:{include['section']}]" not in path.read_text():
            problems.append(f"{where}: no section {include['section']!r}")
        parts = path.relative_to(ROOT).parts
        if parts[0] == "examples":
            name = parts[-1] if parts[1] == "guides" else parts[1]  # a guide's program, or a project's folder
            if f'"{name}"' not in tests_text and f'"{Path(name).stem}' not in tests_text:
                problems.append(f"{where}: no test names {name}")
    assert not problems, "\n".join(problems)


# --- docs/event_loop.md -------------------------------------------------------------------------------------

SVG = "{http://www.w3.org/2000/svg}"


def svg_tips(path: Path) -> list[str]:
    """Parse an SVG the scripts wrote (failing if it is not one); the tooltips of its bars and spans."""
    import xml.etree.ElementTree as ET

    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg", root.tag
    assert float(root.attrib["width"]) > 100, root.attrib
    assert float(root.attrib["height"]) > 50, root.attrib
    assert root.find(f"{SVG}title") is not None
    return [
        title.text or ""
        for shape in root.iter()
        if shape.tag in (f"{SVG}rect", f"{SVG}line")
        for title in shape.findall(f"{SVG}title")
    ]


def test_svg_helper_draws_bars_to_scale_and_a_span_or_tick_per_event(tmp_path: Path) -> None:
    """_svg.bar_chart: bar lengths proportional to the values; _svg.timeline: one shape per span, ticks for instants."""
    sys.path.insert(0, str(GUIDES))
    try:
        import _svg
    finally:
        sys.path.remove(str(GUIDES))
    import xml.etree.ElementTree as ET

    _svg.bar_chart(tmp_path / "bars.svg", "t", [("a", 2.0), ("b & c", 0.5)], unit="x", reference=1.0)
    bars = [
        r for r in ET.parse(tmp_path / "bars.svg").getroot().iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None
    ]
    assert [r.findtext(f"{SVG}title") for r in bars] == ["a: 2.00x", "b & c: 0.50x"]
    assert float(bars[0].attrib["width"]) == pytest.approx(4 * float(bars[1].attrib["width"]), rel=0.01)

    lanes = [_svg.Lane("loop", [_svg.Span(0, 0.3, "work"), _svg.Span(0.35, 0.35, "tick")]), _svg.Lane("thread")]
    _svg.timeline(tmp_path / "time.svg", "t", lanes)
    assert svg_tips(tmp_path / "time.svg") == ["work: 0.000-0.300 s", "tick: 0.350-0.350 s"]
    with pytest.raises(ValueError, match="at least one"):
        _svg.bar_chart(tmp_path / "none.svg", "t", [])


def test_gil_release_plot_shows_both_printed_speedups(tmp_path: Path) -> None:
    """gil_release.py --plot draws one bar per printed speedup, with the printed value."""
    out = run("gil_release.py", "--plot", str(tmp_path / "speedups.svg"))
    printed = [f"{m['label']}: {m['x']}x" for line in out.splitlines() if (m := SPEEDUP.match(line))]
    assert svg_tips(tmp_path / "speedups.svg") == printed


HOLDER = re.compile(r"^(?P<label>.+?)\s+(?P<cpu>[\d.]+) s\s+(?P<wait>[\d.]+) s$")


def test_gil_holders_shows_sleep_io_hashlib_and_zlib_release_the_gil_and_python_does_not(tmp_path: Path) -> None:
    """A thread asleep or waiting uses no CPU; hashing and compressing use CPU without making Python wait; Python does.

    GIL waits are measured apart from waits for a CPU (Linux's schedstat), so
    the claim holds on a busy machine too, where every thread gets less CPU.
    """
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    if not Path("/proc/thread-self/schedstat").exists():
        pytest.skip("needs Linux's per-thread schedstat to tell GIL waits from CPU waits")
    for _attempt in range(3):  # the machine is shared: another program can take the second CPU for a while
        out = run("gil_holders.py", "--plot", str(tmp_path / "holders.svg"), timeout=60)
        rows = {
            m["label"]: (float(m["cpu"]), float(m["wait"])) for line in out.splitlines() if (m := HOLDER.match(line))
        }
        assert list(rows) == [
            "sleeps in time.sleep()",
            "waits in socket.recv()",
            "hashes 32 MiB with hashlib.sha256",
            "compresses 4 MB with zlib.compress",
            "runs a pure-Python loop",
        ], out
        tips = [
            f"{label}: {kind}: {value:.2f} s"
            for label, values in rows.items()
            for kind, value in zip(("CPU time", "GIL wait"), values, strict=True)
        ]
        assert svg_tips(tmp_path / "holders.svg") == tips
        # a sleeping or waiting thread used no CPU at all: it did not wake up to take the GIL now and then
        for label in list(rows)[:2]:
            assert rows[label][0] <= 0.01, out
            assert rows[label][1] <= 0.01, out
        if (
            all(cpu >= 0.02 and wait <= 0.3 * cpu + 0.005 for cpu, wait in list(rows.values())[2:4])
            and rows["runs a pure-Python loop"][1] >= 0.4 * rows["runs a pure-Python loop"][0] >= 0.008
        ):
            break
    else:
        pytest.fail(f"no run showed hashlib and zlib running without the GIL and Python holding it: {out}")


def default_executor_threads() -> int:
    """ThreadPoolExecutor's default max_workers, as this Python computes it."""
    cpus = getattr(os, "process_cpu_count", os.cpu_count)() or 1
    return min(32, cpus + 4)


@pytest.mark.parametrize("loop", LOOPS)
def test_where_it_runs_names_each_thread_and_shows_the_default_pool_does_not_grow(loop: str, tmp_path: Path) -> None:
    """Coroutine on the loop's thread, async_wrap on a worker, to_process elsewhere; gather does not grow a pool."""
    out = run("where_it_runs.py", loop, "--plot", str(tmp_path / "where.svg"))
    lines = out.splitlines()
    assert lines[:3] == [
        "the coroutine            ran in thread 'MainThread' of the event loop's process",
        "an async_wrap function   ran in thread 'asyncbridge-default-1' of the event loop's process",
        "a to_process call        ran in thread 'MainThread' of another process",
    ], out
    pools = [
        re.fullmatch(r"(.+?)\s+12 calls of time.sleep\(0.1\) on\s+(\d+) threads, in ([\d.]+) s", line)
        for line in lines[3:]
    ]
    assert len(pools) == 2, out
    assert all(pools), out
    (name, threads, took), (ours, our_threads, our_took) = (m.groups() for m in pools if m)
    if loop == "trio":
        assert (name, threads) == ("trio.to_thread.run_sync", "12"), out  # trio's limiter allows 40 threads
    else:
        assert (name, int(threads)) == ("run_in_executor(None, ...)", default_executor_threads()), out
        assert float(took) >= 0.2, out  # 12 calls on 6 threads: two waves of 0.1 s
    assert (ours, our_threads) == ("asyncbridge async_wrap", "12"), out
    assert float(our_took) < 0.2, out  # one wave
    tips = svg_tips(tmp_path / "where.svg")
    assert len(tips) == 24, tips  # one span per call
    assert all(tip.startswith("time.sleep(0.1) via ") for tip in tips), tips


STALL = re.compile(r"^  (?P<how>.+?)\s+the timer fired up to\s+(?P<ms>\d+) ms late$")


@pytest.mark.parametrize("loop", LOOPS)
def test_stall_shows_cpu_work_in_a_coroutine_stops_the_loop_and_in_a_thread_or_process_does_not(
    loop: str, tmp_path: Path
) -> None:
    """0.3 s of Python in a coroutine delays a 10 ms timer by about 0.3 s; in a thread or a process, by far less."""
    out = run("stall.py", loop, "--plot", str(tmp_path / "stall.svg"))
    late = {m["how"]: int(m["ms"]) for line in out.splitlines() if (m := STALL.match(line))}
    assert list(late) == ["called in the coroutine", "sent to a thread", "sent to a process"], out
    assert late["called in the coroutine"] >= 250, out  # nothing else on the loop ran during the 300 ms
    assert late["sent to a thread"] < 150, out  # the loop got the GIL back every switch interval (5 ms)
    assert late["sent to a process"] < 150, out
    tips = svg_tips(tmp_path / "stall.svg")
    assert sum(tip.startswith("0.3 s of pure Python") for tip in tips) == 3, tips
    assert sum(tip.startswith("10 ms timer fires") for tip in tips) > 30, tips


def test_mistakes_shows_what_three_popular_asyncio_mistakes_really_do() -> None:
    """sleep without await does not sleep; run(gather(...)) runs nothing; a loop taken at import fails."""
    lines = run("mistakes.py").splitlines()
    assert len(lines) == 4, lines
    slept = re.fullmatch(
        r"1. asyncio.sleep\(1\) without await returned after ([\d.]+) s: it only made a coroutine object", lines[0]
    )
    assert slept, lines
    assert float(slept[1]) < 0.1, lines
    assert re.fullmatch(
        r"2. asyncio.run\(asyncio.gather\(...\)\) raised (ValueError|RuntimeError); jobs that ran: none", lines[1]
    )
    assert lines[2:] == [
        "   asyncio.run(main()) with main awaiting gather ran both: ['a', 'b']",
        "3. a decorator's loop taken at import: RuntimeError, got Future attached to a different loop",
    ]


WORKERS = re.compile(r"^  (?P<server>.+?)\s+took (?P<s>[\d.]+) s, answered by (?P<n>\d+) process(es)?$")


def test_workers_shows_two_server_workers_are_two_processes_that_halve_cpu_bound_time(tmp_path: Path) -> None:
    """uvicorn --workers 2 and gunicorn -w 2: two processes answer, and 8 CPU-bound requests take far less time."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    for _attempt in range(3):  # the kernel may hand every connection to one worker, or another program a CPU
        out = run("workers.py", "--plot", str(tmp_path / "workers.svg"), timeout=120)
        rows = {m["server"]: (float(m["s"]), int(m["n"])) for line in out.splitlines() if (m := WORKERS.match(line))}
        assert list(rows) == ["uvicorn --workers 1", "uvicorn --workers 2", "gunicorn -w 2"], out
        one, processes = rows["uvicorn --workers 1"]
        assert processes == 1, out
        assert one >= 0.75, out  # one loop runs the 8 x 0.1 s one after the other
        assert len(svg_tips(tmp_path / "workers.svg")) == 3 * 8, out
        if all(n == 2 and took < 0.8 * one for took, n in list(rows.values())[1:]):
            break
    else:
        pytest.fail(f"2 workers never answered from 2 processes in well under 1 worker's time: {out}")
