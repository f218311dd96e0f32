"""python -m asyncbridge watch: an unchanged asyncio program, its blocking sites summarised at exit."""

from __future__ import annotations

import ast
import contextlib
import json
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from asyncbridge import _watch
from asyncbridge._watch_report import gather_processes, summary_text
from asyncbridge._watch_report import report as build_report

PROGRAM = textwrap.dedent(
    """
    import asyncio, sys, time

    def slow():
        time.sleep(0.15)

    def slower():
        time.sleep(0.5)

    async def main():
        print("argv", sys.argv[1:], flush=True)
        slow()
        await asyncio.sleep(0.05)
        slow()
        await asyncio.sleep(0.05)
        slower()

    asyncio.run(main())
    try:
        import uvloop
    except ImportError:
        pass
    else:
        loop = uvloop.new_event_loop()
        loop.run_until_complete(asyncio.sleep(0.01))
        loop.close()
    """
)


def watch(*args: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asyncbridge", "watch", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **kwargs,  # type: ignore[call-overload]
    )


def summary_rows(stderr: str) -> list[tuple[str, ...]]:
    """The (total, count, worst, function) of each site, in the order printed."""
    summary = stderr[stderr.index("asyncbridge watch: the event loop was blocked") :]
    return re.findall(r"(?m)^ +([\d.]+) s +(\d+) +([\d.]+) s  (\S+)", summary)


def test_script_blocking_sites_are_ranked_by_total_time_with_count_and_worst(tmp_path: Path) -> None:
    """A script's blocks are summarised by site, largest total first, and written as JSON."""
    (tmp_path / "program.py").write_text(PROGRAM)
    report = tmp_path / "report.json"
    result = watch("--threshold", "0.05", "--report", str(report), "--", "program.py", "a", "--b", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "argv ['a', '--b']" in result.stdout
    loops = 2 if _has_uvloop() else 1  # the program runs a uvloop loop too when it can
    assert f"(threshold 0.05 s, watched 1 process, {loops} event loop{'s' if loops > 1 else ''})" in result.stderr
    rows = summary_rows(result.stderr)
    assert [(row[1], row[3]) for row in rows] == [("1", "slower"), ("2", "slow")]
    assert 0.45 <= float(rows[0][0]) <= 0.6
    assert 0.25 <= float(rows[1][0]) <= 0.4
    assert float(rows[1][2]) < float(rows[1][0])  # the worst of two is less than their total
    data = json.loads(report.read_text())
    assert data["version"] == 1
    assert data["threshold"] == 0.05
    assert data["loops"] == loops
    assert [(p["role"], p["loops"], p["events"]) for p in data["processes"]] == [("main", loops, 3)]
    assert [(s["function"], s["count"], s["code"]) for s in data["sites"]] == [
        ("slower", 1, "time.sleep(0.5)"),
        ("slow", 2, "time.sleep(0.15)"),
    ]
    assert data["sites"][0]["file"] == str(tmp_path / "program.py")
    assert len(data["events"]) == 3
    assert data["events"][0]["stack"][-1]["function"] == "slow"
    assert data["blocked_total"] == pytest.approx(sum(e["duration"] for e in data["events"]))


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def test_module_mode_passes_arguments_and_the_exit_code(tmp_path: Path) -> None:
    """-m MODULE runs the module as __main__ with its arguments; its exit code is watch's."""
    (tmp_path / "blocker.py").write_text(
        textwrap.dedent(
            """
            import asyncio, sys, time

            async def main():
                time.sleep(0.2)

            if __name__ == "__main__":
                asyncio.run(main())
                sys.exit(int(sys.argv[1]))
            """
        )
    )
    result = watch("--threshold=0.05", "-m", "blocker", "3", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert [row[1] for row in summary_rows(result.stderr)] == ["1"]
    assert "main  blocker.py:5" in result.stderr


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_summary_is_printed_when_the_program_is_interrupted(tmp_path: Path, signum: int, code: int) -> None:
    """Ctrl-C (SIGINT) and SIGTERM end the program, and the summary of what blocked is still printed."""
    (tmp_path / "server.py").write_text(
        textwrap.dedent(
            """
            import asyncio, time

            async def main():
                time.sleep(0.2)
                await asyncio.sleep(0.05)
                print("ready", flush=True)
                await asyncio.Event().wait()

            asyncio.run(main())
            """
        )
    )
    command = [sys.executable, "-m", "asyncbridge", "watch", "--threshold", "0.05", "--", "server.py"]
    with subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            assert process.stdout.readline() == "ready\n"
            process.send_signal(signum)
            _, stderr = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == code, stderr
    assert "asyncbridge watch: the event loop was blocked 1 time for 0." in stderr
    assert "main  server.py:5" in stderr


def test_program_error_is_shown_with_the_summary(tmp_path: Path) -> None:
    """An exception ending the program is printed, exit code 1, and the summary follows."""
    (tmp_path / "broken.py").write_text(
        "import asyncio\nasync def main():\n    raise ValueError('boom')\nasyncio.run(main())\n"
    )
    result = watch("--", "broken.py", cwd=tmp_path)
    assert result.returncode == 1
    assert "ValueError: boom" in result.stderr
    assert result.stderr.rstrip().endswith(
        "asyncbridge watch: no block longer than 0.1 s (watched 1 process, 1 event loop)"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "what should I run? give a SCRIPT or -m MODULE after --"),
        (["--"], "what should I run?"),
        (["--threshold"], "--threshold needs a value"),
        (["--threshold", "soon", "--", "x.py"], "--threshold must be a number of seconds, got 'soon'"),
        (["--threshold=0", "x.py"], "--threshold must be a positive number of seconds, got '0'"),
        (["--verbose", "x.py"], "unknown option '--verbose'"),
        (["--", "-m"], "-m needs a module name"),
        (["--format", "xml", "x.py"], "--format must be text or json, got 'xml'"),
        (["--no-children=yes", "x.py"], "unknown option '--no-children=yes'"),
    ],
)
def test_usage_errors_exit_2_saying_what_is_wrong(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad command lines print the usage and the problem to stderr and return 2."""
    assert _watch.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m asyncbridge watch [--threshold S] [--format text|json] [--report FILE]")
    assert f"asyncbridge watch: error: {message}" in err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    """watch --help explains the command and returns 0."""
    assert _watch.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "--report FILE" in out
    assert "-m uvicorn app:app" in out


def test_loop_hooks_are_removed_after_the_program(tmp_path: Path) -> None:
    """Run in-process, watch restores run_forever once the program is done."""
    import asyncio

    (tmp_path / "quick.py").write_text("import asyncio\nasyncio.run(asyncio.sleep(0))\n")
    original = asyncio.BaseEventLoop.__dict__["run_forever"]
    argv, path0 = sys.argv[:], sys.path[0]
    try:
        assert _watch.main(["--", str(tmp_path / "quick.py")]) == 0
    finally:
        sys.argv[:], sys.path[0] = argv, path0
    assert asyncio.BaseEventLoop.__dict__["run_forever"] is original
    if _has_uvloop():
        import uvloop

        assert "run_forever" not in uvloop.Loop.__dict__


# -- what cannot be watched is said, never an all-clear -----------------------------------


@pytest.mark.parametrize(
    ("program", "message"),
    [
        (["nosuch.py"], "cannot run 'nosuch.py': no such file"),
        (["-m", "nosuchmodule"], "cannot run -m nosuchmodule: no module named 'nosuchmodule'"),
        (["-m", "nosuchpackage.sub"], "cannot run -m nosuchpackage.sub: No module named 'nosuchpackage'"),
        (["-m", "emptypackage"], "cannot run -m emptypackage: it is a package with no __main__ module"),
    ],
)
def test_a_program_that_cannot_be_found_exits_2_with_a_clear_message(
    tmp_path: Path, program: list[str], message: str
) -> None:
    """A missing script or module is an error naming it: no traceback, and no summary claiming all was well."""
    (tmp_path / "emptypackage").mkdir()
    (tmp_path / "emptypackage" / "__init__.py").write_text("")
    result = watch("--", *program, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"asyncbridge watch: error: {message}")
    assert "Traceback" not in result.stderr
    assert "no block" not in result.stderr


def test_a_program_that_runs_no_event_loop_exits_3_saying_nothing_was_checked(tmp_path: Path) -> None:
    """A program that never runs a loop is not given an all-clear: watch says nothing was checked, exit 3."""
    (tmp_path / "plain.py").write_text("print('done')\n")
    result = watch("--", "plain.py", cwd=tmp_path)
    assert result.returncode == _watch.NOTHING_CHECKED == 3
    assert result.stdout == "done\n"
    assert result.stderr.rstrip().endswith("asyncbridge watch: watched 1 process, 0 event loops: nothing was checked")


def test_a_failing_program_keeps_its_exit_code_when_it_ran_no_loop(tmp_path: Path) -> None:
    """The program's own failure code wins over 'nothing was checked'."""
    (tmp_path / "fails.py").write_text("import sys\nsys.exit(5)\n")
    result = watch("--", "fails.py", cwd=tmp_path)
    assert result.returncode == 5
    assert "nothing was checked" in result.stderr


# -- the process tree -----------------------------------------------------------------------

FAMILY = textwrap.dedent(
    """
    import asyncio, multiprocessing, os, subprocess, sys, time

    def helper():
        time.sleep(0.2)

    async def in_child():
        helper()

    def child(queue):
        queue.put(os.getpid())
        asyncio.run(in_child())

    SUBPROCESS = "import asyncio, time\\nasync def sub():\\n    time.sleep(0.2)\\nasyncio.run(sub())\\n"

    if __name__ == "__main__":
        pids = {}
        for method in ("spawn", "fork"):
            context = multiprocessing.get_context(method)
            queue = context.Queue()
            process = context.Process(target=child, args=(queue,))
            process.start()
            pids[method] = queue.get(timeout=30)
            process.join(30)
        sub = subprocess.Popen([sys.executable, "-c", SUBPROCESS])
        pids["subprocess"] = sub.pid
        sub.wait(30)
        print(pids, flush=True)
    """
)


def last_json(stderr: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(stderr.rstrip().splitlines()[-1])
    return data


def test_python_children_are_watched_and_their_blocks_merged_by_pid(tmp_path: Path) -> None:
    """Spawn and fork children and a subprocess of sys.executable run the detector; the summary names each pid."""
    (tmp_path / "family.py").write_text(FAMILY)
    result = watch("--threshold", "0.05", "--format", "json", "--", "family.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pids = ast.literal_eval(result.stdout.strip().splitlines()[-1])  # the program's own report of its children
    data: Any = last_json(result.stderr)
    roles = {p["pid"]: p["role"] for p in data["processes"]}
    assert data["processes"][0]["role"] == "main"
    assert data["processes"][0]["loops"] == 0  # the program itself runs no loop: its children do
    assert roles[pids["spawn"]].startswith("SpawnProcess-")
    assert roles[pids["fork"]].startswith("ForkProcess-")
    assert data["loops"] == 3
    by_site = {(s["function"], (s["caller"] or {}).get("function")): s for s in data["sites"]}
    helper = by_site[("helper", "in_child")]
    assert helper["code"] == "time.sleep(0.2)"
    assert sorted(helper["pids"]) == sorted([pids["spawn"], pids["fork"]])
    assert by_site[("sub", None)]["pids"] == [pids["subprocess"]]


def test_summary_text_says_which_process_each_block_came_from(tmp_path: Path) -> None:
    """The text summary counts processes and loops, and names each site's pids with their roles."""
    (tmp_path / "family.py").write_text(FAMILY)
    result = watch("--threshold", "0.05", "--", "family.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pids = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert re.search(r"threshold 0.05 s, watched \d+ processes, 3 event loops\)", result.stderr)
    assert re.search(
        rf"in pid {pids['spawn']} \(SpawnProcess-\d+\), pid {pids['fork']} \(ForkProcess-\d+\)", result.stderr
    )
    assert f"in pid {pids['subprocess']} (-c)" in result.stderr


def test_no_children_watches_only_the_watched_process(tmp_path: Path) -> None:
    """--no-children injects nothing: the children's blocks go unseen, and the environment is untouched."""
    (tmp_path / "family.py").write_text(FAMILY)
    result = watch("--no-children", "--format", "json", "--", "family.py", cwd=tmp_path)
    data: Any = last_json(result.stderr)
    pids = ast.literal_eval(result.stdout.strip().splitlines()[-1])
    assert [p["role"] for p in data["processes"]] == ["main"]
    assert pids["fork"] not in [pid for site in data["sites"] for pid in site["pids"]]
    assert result.returncode == _watch.NOTHING_CHECKED  # the fork child's loop is not this process's


def test_a_users_own_sitecustomize_still_runs(tmp_path: Path) -> None:
    """The bootstrap that watches children hides no sitecustomize of the user's: it runs it after its own."""
    own = tmp_path / "own"
    own.mkdir()
    (own / "sitecustomize.py").write_text("import os\nos.environ['OWN_SITECUSTOMIZE'] = 'ran'\n")
    (tmp_path / "parent.py").write_text(
        "import subprocess, sys\n"
        'code = \'import os, sys; print(os.environ.get("OWN_SITECUSTOMIZE"), "asyncbridge._watch" in sys.modules)\'\n'
        "subprocess.run([sys.executable, '-c', code], check=True)\n"
    )
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(own), os.environ.get("PYTHONPATH", "")])}
    result = watch("--", "parent.py", cwd=tmp_path, env=env)
    assert result.stdout == "ran True\n", result.stderr


# -- trio -----------------------------------------------------------------------------------


def test_trio_run_is_watched_like_asyncio(tmp_path: Path) -> None:
    """trio.run under watch is detected: the block, its line, and the run counted as an event loop."""
    (tmp_path / "trio_program.py").write_text(
        textwrap.dedent(
            """
            import time, trio

            async def main(n):
                time.sleep(0.2)
                await trio.sleep(0.01)
                return n

            print(trio.run(main, 7))
            """
        )
    )
    result = watch("--threshold", "0.05", "--format", "json", "--", "trio_program.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "7\n"
    data: Any = last_json(result.stderr)
    assert data["loops"] == 1
    [site] = data["sites"]
    assert (site["function"], site["line"], site["code"], site["count"]) == ("main", 5, "time.sleep(0.2)", 1)
    assert site["tasks"] == ["__main__.main"]  # the run's main task keeps the program's name


# -- grouping and JSON ------------------------------------------------------------------------


def test_sites_are_grouped_by_the_caller_that_reached_the_blocking_function(tmp_path: Path) -> None:
    """One blocking helper called from two coroutines is two sites, each naming its caller."""
    (tmp_path / "callers.py").write_text(
        textwrap.dedent(
            """
            import asyncio, time

            def query():
                time.sleep(0.15)

            async def orders():
                query()

            async def users():
                query()
                await asyncio.sleep(0.02)
                query()

            async def main():
                await orders()
                await asyncio.sleep(0.02)
                await users()

            asyncio.run(main())
            """
        )
    )
    result = watch("--threshold", "0.05", "--", "callers.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = summary_rows(result.stderr)
    assert [(row[1], row[3]) for row in rows] == [("2", "query"), ("1", "query")]
    summary = result.stderr[result.stderr.index("asyncbridge watch: the event loop") :]
    first, second = summary.split("called from ")[1:3]
    assert re.match(r"users  callers.py:1[13]\n", first)  # the line of the worse of its two blocks
    assert second.startswith("orders  callers.py:8")


# -- uvicorn's worker processes, for real -----------------------------------------------------

APP = textwrap.dedent(
    """
    import time

    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/block")
    async def block():
        time.sleep(0.3)  # the line watch must name
        return {"ok": True}
    """
)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_under_watch(
    tmp_path: Path,
    server: list[str],
    port: int,
    signum: signal.Signals,
    *,
    watch_args: tuple[str, ...] = ("--threshold", "0.05", "--format", "json"),
    paths: tuple[str, ...] = ("/block",) * 4,
    cwd: Path | None = None,
) -> tuple[int, str, int]:
    """Run ``watch WATCH_ARGS -- SERVER``, GET each of PATHS, end it with SIGNUM; its exit code, stderr and pid.

    The server runs in CWD (tmp_path, where the tests write their app.py, by
    default). The signal goes to watch alone, as a service manager or Ctrl-C
    sends it: the server must stop its own workers. Whatever happens, the whole
    process group is killed at the end, so that no server outlives the test.
    """
    import os

    import httpx

    command = [sys.executable, "-m", "asyncbridge", "watch", *watch_args, "--", *server]
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("w") as stderr_file:
        process = subprocess.Popen(
            command, cwd=cwd or tmp_path, stdout=subprocess.DEVNULL, stderr=stderr_file, start_new_session=True
        )
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        response = client.get(paths[0])
                        break
                    except httpx.TransportError:
                        assert time.monotonic() < deadline, stderr_path.read_text()
                        assert process.poll() is None, stderr_path.read_text()
                        time.sleep(0.1)
                response.raise_for_status()
                for path in paths[1:]:
                    client.get(path).raise_for_status()
            process.send_signal(signum)
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            with contextlib.suppress(ProcessLookupError):  # a worker left behind by a server that died
                os.killpg(process.pid, signal.SIGKILL)
    return process.returncode, stderr_path.read_text(), process.pid


def blocking_site(tmp_path: Path, stderr: str) -> tuple[dict[str, Any], dict[int, Any]]:
    """The summary's one site in app.py's endpoint, checked to name its line; and the processes, by pid."""
    data: Any = last_json(stderr)
    processes = {p["pid"]: p for p in data["processes"]}
    [site] = [s for s in data["sites"] if s["function"] == "block"]
    assert (site["file"], site["line"], site["code"]) == (
        str(tmp_path / "app.py"),
        10,
        "time.sleep(0.3)  # the line watch must name",
    )
    assert site["count"] == 4
    return site, processes


@pytest.mark.parametrize(
    ("mode", "signum"),
    [
        (["--workers", "2"], signal.SIGINT),
        (["--workers", "2"], signal.SIGTERM),
        (["--reload"], signal.SIGINT),
        (["--reload"], signal.SIGTERM),
    ],
    ids=["workers-SIGINT", "workers-SIGTERM", "reload-SIGINT", "reload-SIGTERM"],
)
def test_uvicorn_workers_blocks_are_reported_with_the_workers_pid(
    tmp_path: Path, mode: list[str], signum: signal.Signals
) -> None:
    """uvicorn --workers 2 / --reload serve from child processes: their blocks reach watch's summary, by pid.

    Ended as a service manager ends it (SIGTERM) or as Ctrl-C does (SIGINT), sent to watch alone:
    uvicorn stops its workers, and the blocks they saw are in the summary.
    """
    port = _free_port()
    server = ["-m", "uvicorn", "--app-dir", str(tmp_path), "app:app", "--host", "127.0.0.1", "--port", str(port)]
    (tmp_path / "app.py").write_text(APP)
    code, stderr, watch_pid = serve_under_watch(tmp_path, server + mode, port, signum)
    assert code == 0, stderr
    site, processes = blocking_site(tmp_path, stderr)
    for pid in site["pids"]:  # served by the workers, never by the supervisor that watch runs
        assert pid != watch_pid
        assert processes[pid]["role"].startswith("SpawnProcess-")
        assert processes[pid]["loops"] >= 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_gunicorn_uvicorn_workers_blocks_are_reported_with_the_workers_pid_and_title(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """gunicorn -k UvicornWorker -w 2: its master runs in watch's process, its workers are fork children.

    Their blocks reach the summary with the worker's pid, named by the title
    gunicorn gives it (shown by ps when setproctitle is installed); the master
    runs no event loop, and serves nothing.
    """
    pytest.importorskip("gunicorn")
    pytest.importorskip("uvicorn_worker")
    port = _free_port()
    server = ["-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", "2", "--no-control-socket"]
    server += ["--chdir", str(tmp_path), "-b", f"127.0.0.1:{port}", "app:app"]
    (tmp_path / "app.py").write_text(APP)
    code, stderr, watch_pid = serve_under_watch(tmp_path, server, port, signum)
    assert code == 0, stderr
    site, processes = blocking_site(tmp_path, stderr)
    assert processes[watch_pid]["role"] == "main"
    assert processes[watch_pid]["loops"] == 0  # the master: it forks the workers, which serve
    workers = [pid for pid, p in processes.items() if p["role"] == "gunicorn: worker [app:app]"]
    assert len(workers) == 2, processes
    assert site["pids"]
    assert set(site["pids"]) <= set(workers)
    for pid in workers:
        assert processes[pid]["loops"] >= 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_hypercorn_workers_blocks_are_reported_with_the_workers_pid(tmp_path: Path, signum: signal.Signals) -> None:
    """hypercorn --workers 2 serves from spawn children: their blocks reach the summary, by pid and role."""
    pytest.importorskip("hypercorn")
    port = _free_port()
    server = ["-m", "hypercorn", "--workers", "2", "-b", f"127.0.0.1:{port}", "app:app"]
    (tmp_path / "app.py").write_text(APP)
    code, stderr, watch_pid = serve_under_watch(tmp_path, server, port, signum)
    assert code == 0, stderr
    site, processes = blocking_site(tmp_path, stderr)
    assert processes[watch_pid]["loops"] == 0  # hypercorn's supervisor runs no loop: its workers do
    for pid in site["pids"]:
        assert pid != watch_pid
        assert processes[pid]["role"].startswith("SpawnProcess-")
        assert processes[pid]["loops"] >= 1


def test_summary_puts_a_gil_wait_on_the_holders_line_and_marks_starved_blocks() -> None:
    """A GIL wait is summarised at the line of the thread that held the GIL; a starved block says so."""
    import traceback

    from asyncbridge import BlockingEvent

    def stack(*frames: tuple[str, int, str]) -> traceback.StackSummary:
        return traceback.StackSummary.from_list(
            [traceback.FrameSummary(file, line, name, lookup_line=False) for file, line, name in frames]
        )

    loop_line = stack(("/srv/app.py", 10, "handler"))
    holder = stack(("/srv/work.py", 3, "crunch"))
    watcher = _watch._Watcher(0.05, None, child=False)
    watcher.loops.add(1)
    watcher.events += [
        BlockingEvent(0.4, loop_line, "Task-1", 0.0, cpu_time=0.0, cpu_wait=0.0, gil_holders=(("crunch-0", holder),)),
        BlockingEvent(0.3, loop_line, "Task-2", 0.0, cpu_time=0.01, cpu_wait=0.25),
    ]
    text = summary_text(
        watcher.threshold, gather_processes(len(watcher.loops), list(watcher.events), watcher.report_dir)
    )
    rows = summary_rows(text)
    assert [(row[0], row[3]) for row in rows] == [("0.400", "crunch"), ("0.300", "handler")]
    assert "crunch  /srv/work.py:3\n" in text
    assert "the loop waited for the GIL, held by thread 'crunch-0' running this line" in text
    assert "starved, not blocked: the loop thread waited for a CPU" in text
    report = build_report(
        watcher.threshold, gather_processes(len(watcher.loops), list(watcher.events), watcher.report_dir)
    )
    assert [(s["cause"], s["gil_thread"]) for s in report["sites"]] == [("gil", "crunch-0"), ("starved", None)]
    assert report["events"][0]["gil_holders"] == [
        {"thread": "crunch-0", "site": {"file": "/srv/work.py", "line": 3, "function": "crunch", "code": ""}}
    ]


def test_a_child_that_cannot_import_asyncbridge_uses_the_watchers(tmp_path: Path) -> None:
    """A Python child whose path lacks asyncbridge (its PYTHONPATH cut to the bootstrap) is still watched."""
    (tmp_path / "cut.py").write_text(
        textwrap.dedent(
            """
            import os, subprocess, sys
            env = dict(os.environ, PYTHONPATH=os.environ["PYTHONPATH"].split(os.pathsep)[0])
            code = "import asyncio, time\\nasync def cut():\\n    time.sleep(0.2)\\nasyncio.run(cut())\\n"
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            """
        )
    )
    result = watch("--threshold", "0.05", "--format", "json", "--", "cut.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data: Any = last_json(result.stderr)
    assert [site["function"] for site in data["sites"]] == ["cut"]


# -- the guide's example, docs/detector.md ------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "detector.md"
GUIDE_COMMAND = (
    "python -m asyncbridge watch --threshold 0.05 -- -m uvicorn --app-dir examples/guides watch_app:app --workers 2"
)


def stable_summary(text: str) -> list[str]:
    """The text summary's lines, from its first line on, without what changes from run to run.

    Durations, counts of events, pids, the workers' names and the tasks are masked.
    The workers' start is left out: uvicorn imports the app on each worker's loop,
    a block (or, on a loaded machine, starvation) whose length, sampled line and
    cause vary with the machine's load, as do the totals in the first line.
    """
    lines = text[text.index("asyncbridge watch: the event loop was blocked") :].rstrip().splitlines()
    header = re.sub(r"blocked \d+ times for [\d.]+ s", "blocked N times for #.### s", lines[0])
    sites: list[list[str]] = []
    for line in lines[2:]:
        if re.match(r" +[\d.]+ s +\d+ +[\d.]+ s  ", line):
            sites.append([])
        sites[-1].append(re.sub(r"[\d.]+ s", "#.### s", line) if not sites[-1] else line)
    kept = [site for site in sites if "  <module>  " not in site[0]]
    masked = [re.sub(r"^( +)in pid .*", r"\1in pid ...", line) for site in kept for line in site]
    return [header, lines[1], *masked]


def test_every_program_the_guide_embeds_is_run_here() -> None:
    """The examples/guides/watch_* programs docs/detector.md embeds exist, and a test of this file runs them."""
    embedded = re.findall(r'^[ \t]*--8<-- "examples/guides/(watch_\w+\.py)"$', GUIDE.read_text(), re.M)
    assert embedded == ["watch_app.py"]
    for program in embedded:
        assert (ROOT / "examples" / "guides" / program).is_file()
        assert f" {program.removesuffix('.py')}:app " in GUIDE_COMMAND  # served by the test below


def test_the_guides_watch_output_is_what_watch_prints_for_its_example_app(tmp_path: Path) -> None:
    """docs/detector.md's watch run, for real: uvicorn --workers 2 serving examples/guides/watch_app.py.

    The page shows the command and the summary; run here as it says (plus a port),
    with the requests it lists, the summary printed is the page's, durations, pids
    and task names aside. The def endpoint and the awaiting one are not in it.
    """
    guide = GUIDE.read_text()
    runs = re.findall(r"```console\n(\$ " + re.escape(GUIDE_COMMAND) + r"\n.*?)```", guide, re.S)
    [shown] = [run for run in runs if "asyncbridge watch: the event loop was blocked" in run]
    paths = tuple(re.findall(r"^\$ curl -s localhost:8000(/\w+)$", guide, re.M))
    assert paths == ("/orders", "/orders", "/orders", "/customers", "/export", "/health")
    port = _free_port()
    server = [*GUIDE_COMMAND.split(" -- ")[1].split(), "--host", "127.0.0.1", "--port", str(port)]
    watch_args = tuple(GUIDE_COMMAND.split(" -- ")[0].split()[4:])
    code, stderr, _ = serve_under_watch(
        tmp_path, server, port, signal.SIGINT, watch_args=watch_args, paths=paths, cwd=ROOT
    )
    assert code == 0, stderr
    printed = stable_summary(stderr)
    assert printed == stable_summary(shown), stderr
    assert "query  examples/guides/watch_app.py:" in stderr
    assert "called from orders" in stderr
    assert "export" not in stderr.split("asyncbridge watch: the event loop")[-1]
    assert re.search(r"in pid \d+ \(SpawnProcess-\d\)", stderr)
