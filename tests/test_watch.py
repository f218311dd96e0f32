"""python -m asyncbridge watch: an unchanged asyncio program, its blocking sites summarised at exit."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asyncbridge import _watch

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
    assert f"(threshold 0.05 s, {loops} event loop{'s' if loops > 1 else ''})" in result.stderr
    rows = summary_rows(result.stderr)
    assert [(row[1], row[3]) for row in rows] == [("1", "slower"), ("2", "slow")]
    assert 0.45 <= float(rows[0][0]) <= 0.6
    assert 0.25 <= float(rows[1][0]) <= 0.4
    assert float(rows[1][2]) < float(rows[1][0])  # the worst of two is less than their total
    data = json.loads(report.read_text())
    assert data["threshold"] == 0.05
    assert data["loops"] == loops
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
    assert result.stderr.rstrip().endswith("asyncbridge watch: no block longer than 0.1 s on 1 event loop")


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
    ],
)
def test_usage_errors_exit_2_saying_what_is_wrong(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad command lines print the usage and the problem to stderr and return 2."""
    assert _watch.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m asyncbridge watch [--threshold S] [--report FILE] -- (SCRIPT | -m MODULE)")
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
