"""The guides' example programs (examples/guides/): each one runs and prints what its guide shows.

Every program is run as its guide tells readers to run it, in a subprocess of
this interpreter with the worktree's package importable, under asyncio, uvloop
and trio where it is async. The guide pages embed the programs whole with
``--8<--`` (pymdownx.snippets), so the code on the site is the code run here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
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


def test_gil_release_shows_hashing_scales_on_threads_and_python_does_not() -> None:
    """sha256 of large buffers runs faster on 2 threads; a pure-Python loop does not (the GIL)."""
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    for _attempt in range(3):  # the machine is shared: another program can take the second CPU for a while
        lines = run("gil_release.py").splitlines()
        assert len(lines) == 2, lines
        found = [m for line in lines if (m := SPEEDUP.match(line))]
        assert [m["label"] for m in found] == ["hashlib.sha256, 32 MiB buffers", "pure-Python loop"], lines
        hashing, python = (float(m["x"]) for m in found)
        assert python < 1.3, lines  # two threads of bytecode never beat one by much under the GIL
        if hashing > 1.4:
            break
    else:
        pytest.fail(f"hashing did not scale on 2 threads in 3 runs: {lines}")


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
