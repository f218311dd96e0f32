"""The pytest plugin: off unless asked; then async tests that block their loop fail with the report."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

BACKENDS = {
    "asyncio": "('asyncio', {})",
    "uvloop": "('asyncio', {'use_uvloop': True})",
    "trio": "('trio', {})",
}

BLOCKING_TEST = """
import time
import pytest
from asyncbridge import async_wrap

@pytest.mark.anyio
async def test_blocks():
    time.sleep(0.3)
"""


# The hypothesis plugin takes seconds per in-process run; only its own test needs it.
INI = "[pytest]\nfilterwarnings = error\naddopts = -p no:hypothesispytest\n"


@pytest.fixture
def suite(pytester: pytest.Pytester, request: pytest.FixtureRequest) -> pytest.Pytester:
    """A test directory whose async tests run on the given backends (asyncio unless parametrized)."""
    backends = getattr(request, "param", ["asyncio"])
    params = ", ".join(f"pytest.param({BACKENDS[b]}, id={b!r})" for b in backends)
    pytester.makeconftest(
        f"""
import pytest

@pytest.fixture(params=[{params}])
def anyio_backend(request):
    return request.param
"""
    )
    pytester.makeini(INI)
    return pytester


@pytest.mark.parametrize("suite", [list(BACKENDS)], indirect=True, ids=["all-backends"])
def test_blocking_test_fails_with_the_line_and_passes_through_async_wrap(suite: pytest.Pytester) -> None:
    """A deliberately blocking async test fails naming its line, on every backend; via async_wrap it passes."""
    suite.makepyfile(test_it=BLOCKING_TEST)
    result = suite.runpytest("--blocking-threshold=0.05")
    result.assert_outcomes(failed=3)
    line = BLOCKING_TEST.lstrip("\n").splitlines().index("    time.sleep(0.3)") + 1
    for backend in BACKENDS:
        result.stdout.fnmatch_lines(
            [
                f"*_ test_blocks[[]{backend}[]] _*",
                "the event loop was blocked longer than 0.05 s during this test:",
                "",
                "event loop blocked for 0.[23]* s in task *",
                f"  at test_blocks (*test_it.py:{line})",
                "Stack (innermost last):",
            ]
        )
    assert result.stdout.str().count("    time.sleep(0.3)") >= 3
    suite.makepyfile(test_it=BLOCKING_TEST.replace("time.sleep(0.3)", "await async_wrap(time.sleep)(0.3)"))
    suite.runpytest("--blocking-threshold=0.05").assert_outcomes(passed=3)


def test_plugin_does_nothing_unless_enabled(suite: pytest.Pytester) -> None:
    """Without option, ini, marker or fixture a blocking test passes and no detector runs."""
    suite.makepyfile(
        test_it=BLOCKING_TEST
        + """
    import threading
    assert not [t for t in threading.enumerate() if t.name == "asyncbridge-watchdog"]
    assert not hasattr(time.sleep, "__wrapped__")
"""
    )
    suite.runpytest().assert_outcomes(passed=1)


def test_ini_setting_enables_the_plugin(suite: pytest.Pytester) -> None:
    """blocking_threshold in the ini file turns the plugin on for every async test."""
    suite.makeini(INI + "blocking_threshold = 0.05\n")
    suite.makepyfile(test_it=BLOCKING_TEST)
    result = suite.runpytest()
    result.assert_outcomes(failed=1)
    assert "blocked longer than 0.05 s" in result.stdout.str()


def test_marker_enables_one_test_and_opts_another_out(suite: pytest.Pytester) -> None:
    """The marker turns detection on for its test, with its threshold; enabled=False opts out."""
    suite.makepyfile(
        test_it="""
import time
import pytest

@pytest.mark.anyio
@pytest.mark.blocking_detector(0.05)
async def test_marked():
    time.sleep(0.3)

@pytest.mark.anyio
@pytest.mark.blocking_detector
async def test_bare_marker_uses_the_default():
    time.sleep(0.01)  # well under the threshold

@pytest.mark.anyio
async def test_unmarked():
    time.sleep(0.3)

@pytest.mark.anyio
@pytest.mark.blocking_detector(enabled=False)
async def test_opted_out():
    time.sleep(0.3)
"""
    )
    result = suite.runpytest("-v")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(["*test_marked*FAILED*"])
    result = suite.runpytest("--blocking-threshold=0.05", "-v")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*test_opted_out*PASSED*"])


def test_fixture_is_the_detector_and_turns_it_on(suite: pytest.Pytester) -> None:
    """The blocking_detector fixture enables the plugin and exposes the events, which may be cleared."""
    suite.makepyfile(
        test_it="""
import time
import pytest

@pytest.mark.anyio
@pytest.mark.blocking_detector(0.05)
async def test_expects_a_block(blocking_detector):
    assert blocking_detector.threshold == 0.05
    time.sleep(0.3)
    await blocking_detector.checkpoint()  # the documented recipe: the event is in after it
    assert [e.site.name for e in blocking_detector.events] == ["test_expects_a_block"]
    blocking_detector.events.clear()

@pytest.mark.anyio
async def test_does_not_clear(blocking_detector):
    time.sleep(0.3)

def test_sync_test_gets_an_idle_detector(blocking_detector):
    assert blocking_detector.events == []
"""
    )
    result = suite.runpytest("-v")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*test_does_not_clear*FAILED*"])


def test_sync_tests_are_left_alone(suite: pytest.Pytester) -> None:
    """Sync tests run as usual when the plugin is on: there is no event loop to watch."""
    suite.makepyfile(
        test_it="""
import time

def test_sync():
    time.sleep(0.2)
"""
    )
    suite.runpytest("--blocking-threshold=0.05").assert_outcomes(passed=1)


def test_a_failing_test_keeps_its_error_and_shows_the_report_as_a_section(suite: pytest.Pytester) -> None:
    """When the test fails on its own, its error stays the failure; the block report is a section."""
    suite.makepyfile(
        test_it="""
import time
import pytest

@pytest.mark.anyio
async def test_blocks_then_fails():
    time.sleep(0.3)
    assert 1 == 2, "the test's own failure"
"""
    )
    result = suite.runpytest("--blocking-threshold=0.05")
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "AssertionError: the test's own failure" in output
    assert "Captured blocking call" in output
    assert re.search(r"event loop blocked for 0\.[23]\d\d s", output)


def test_strict_mode_fails_tests_that_make_known_blocking_calls(suite: pytest.Pytester) -> None:
    """--blocking-strict fails a test making a short time.sleep; raise mode raises at the call."""
    suite.makepyfile(
        test_it="""
import time
import pytest

@pytest.mark.anyio
async def test_short_sleep():
    time.sleep(0.001)
"""
    )
    suite.runpytest().assert_outcomes(passed=1)
    result = suite.runpytest("--blocking-strict")
    result.assert_outcomes(failed=1)
    assert "known blocking calls were made on the event loop thread during this test" in result.stdout.str()
    assert "blocking call time.sleep() on the event loop thread took" in result.stdout.str()
    result = suite.runpytest("--blocking-strict=raise")
    result.assert_outcomes(failed=1)
    assert "BlockingCallError: time.sleep() called on the event loop thread" in result.stdout.str()


def test_allow_rules_from_the_ini_file_and_the_unused_ones_listed(suite: pytest.Pytester) -> None:
    """blocking_allow rules let calls through; those that never matched are listed at the end."""
    suite.makeini(
        INI
        + """blocking_strict = raise
blocking_allow =
    time.sleep@test_it
    socket.*@nowhere
"""
    )
    suite.makepyfile(
        test_it="""
import time
import pytest

@pytest.mark.anyio
async def test_allowed_sleep():
    time.sleep(0.001)

@pytest.mark.anyio
@pytest.mark.blocking_detector(allow=["os.read@nowhere.else"])
async def test_marker_adds_rules():
    time.sleep(0.001)
"""
    )
    result = suite.runpytest()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["asyncbridge: blocking_allow rules that never matched a call: socket.*@nowhere"])


def test_hypothesis_async_tests_are_watched(suite: pytest.Pytester) -> None:
    """An async hypothesis test (each example run by anyio) is watched too."""
    suite.makepyfile(
        test_it="""
import time
import pytest
from hypothesis import given, settings, strategies as st

@pytest.mark.anyio
@settings(max_examples=2, deadline=None, database=None)
@given(st.integers())
async def test_property(n):
    time.sleep(0.3)
"""
    )
    result = suite.runpytest("--blocking-threshold=0.05", "-p", "hypothesispytest")
    result.assert_outcomes(failed=1)
    assert re.search(r"event loop blocked for 0\.[23]\d\d s", result.stdout.str())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--blocking-threshold=soon"], "the blocking threshold must be a positive number of seconds, got 'soon'"),
        (["--blocking-threshold=-1"], "got '-1'"),
        (["--blocking-strict=loudly"], "blocking strict mode must be false, report (or true) or raise"),
    ],
)
def test_bad_option_values_are_usage_errors(suite: pytest.Pytester, args: list[str], message: str) -> None:
    """A bad --blocking-threshold or --blocking-strict stops pytest with a usage error saying why."""
    suite.makepyfile(test_it=BLOCKING_TEST)
    result = suite.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_bad_marker_arguments_fail_the_test(suite: pytest.Pytester) -> None:
    """A marker with bad arguments fails its test with a message naming the problem."""
    suite.makepyfile(
        test_it="""
import pytest

@pytest.mark.anyio
@pytest.mark.blocking_detector(threshold="soon")
async def test_bad_threshold():
    pass

@pytest.mark.anyio
@pytest.mark.blocking_detector(0.1, loud=True)
async def test_unknown_argument():
    pass
"""
    )
    result = suite.runpytest()
    result.assert_outcomes(failed=2)
    output = result.stdout.str()
    assert "asyncbridge blocking detector: threshold must be a number of seconds, got 'soon'" in output
    assert "bad @pytest.mark.blocking_detector(...)" in output
    assert "loud" in output


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    """The blocking_detector marker is registered, so --strict-markers accepts it."""
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.blocking_detector(threshold=None, *, strict=None*"])


STARVED_SUITE = """
import time
import pytest
from asyncbridge import BlockingEvent

def starved(duration):
    # What the detector records when the loop thread mostly waited for a CPU (real starvation is
    # tested in test_detector.py; here, what the plugin makes of such an event).
    return BlockingEvent(duration, __import__("traceback").StackSummary(), None, time.time(),
                         cpu_time=0.01, cpu_wait=duration * 0.9)

@pytest.mark.anyio
async def test_starved_only(blocking_detector):
    blocking_detector.events.append(starved(0.3))

@pytest.mark.anyio
async def test_starved_and_blocked(blocking_detector):
    blocking_detector.events.append(starved(0.3))
    time.sleep(0.3)
"""


def test_starved_blocks_do_not_fail_unless_asked(suite: pytest.Pytester) -> None:
    """A starved event (the machine was overloaded) passes the test and is listed; a real block still fails."""
    suite.makepyfile(test_it=STARVED_SUITE)
    result = suite.runpytest("-v", "--blocking-threshold=0.05")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_starved_only*PASSED*",
            "*test_starved_and_blocked*FAILED*",
            "*the event loop was starved for CPU, not blocked, in 1 test(s) that passed*test_starved_only*",
        ]
    )
    failure = result.stdout.str()
    assert "event loop blocked for 0." in failure  # the real block is the failure's message


@pytest.mark.parametrize("how", [["--blocking-fail-on-starvation"], ["-o", "blocking_fail_on_starvation=true"]])
def test_fail_on_starvation_fails_starved_tests_too(suite: pytest.Pytester, how: list[str]) -> None:
    """--blocking-fail-on-starvation (or the ini setting) fails a test whose loop was only starved."""
    suite.makepyfile(test_it=STARVED_SUITE)
    result = suite.runpytest("-v", "--blocking-threshold=0.05", *how)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*event loop starved for 0.300 s*"])


REAL_STARVATION_SUITE = """
import os, subprocess, sys, threading, time
import anyio
import pytest

# This process's session is its own scheduling group (the test starts it so): where allowed (root), put
# that group first among the machine's others, so that their load neither starves the blocking test
# nor feeds the starved one the CPU its hog should take. Inside the group, nice still decides.
try:
    with open("/proc/self/autogroup", "w") as autogroup:
        autogroup.write("-20")
except OSError:
    pass

HOG = "import os\\nparent = os.getppid()\\nwhile os.getppid() == parent:\\n    pass\\n"

@pytest.fixture
def hog():
    # A busy process, killed after the test; busy only until its parent is gone, even killed.
    process = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        yield process
    finally:
        process.kill()
        process.wait()

async def spinner(until):
    while time.monotonic() < until:
        await anyio.sleep(0)

@pytest.mark.anyio
async def test_blocks():
    time.sleep(0.3)

@pytest.mark.anyio
async def test_starved(hog):
    # The loop thread alone is pinned to the hog's CPU, at nice 19 against its 0: ready to run, it
    # waits for that CPU, while the detector's watchdog thread runs on the others.
    everywhere = os.sched_getaffinity(0)
    cpu = min(everywhere)
    me = threading.get_native_id()
    os.sched_setaffinity(hog.pid, {cpu})
    os.sched_setaffinity(me, {cpu})
    os.setpriority(os.PRIO_PROCESS, me, 19)
    try:
        async with anyio.create_task_group() as group:
            for _ in range(50):
                group.start_soon(spinner, time.monotonic() + 1.5)
    finally:
        os.sched_setaffinity(me, everywhere)
        try:
            os.setpriority(os.PRIO_PROCESS, me, 0)
        except PermissionError:  # unprivileged: the next test of this backend runs at nice 19
            pass
"""


def run_in_own_session(suite: pytest.Pytester, *args: str) -> str:
    """Run pytest on the suite in a child process of its own session (scheduling group); its output."""
    command = [sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *args]
    process = subprocess.Popen(
        command, cwd=suite.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    return output


needs_schedstat = pytest.mark.skipif(
    not (sys.platform == "linux" and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2),
    reason="needs Linux's per-thread scheduler statistics and two CPUs",
)


@needs_schedstat
@pytest.mark.parametrize("suite", [list(BACKENDS)], indirect=True, ids=["all-backends"])
def test_real_starvation_passes_and_a_real_block_fails(suite: pytest.Pytester) -> None:
    """A test whose loop thread really waits for a CPU passes, listed as starved; one that sleeps fails.

    The starved test pins its loop thread to one CPU at nice 19, beside a busy
    process at nice 0 (killed after it), for 1.5 s; on every backend.
    --blocking-fail-on-starvation fails it too, with the starvation reported.
    """
    suite.makepyfile(test_it=REAL_STARVATION_SUITE)
    output = run_in_own_session(suite, "--blocking-threshold=0.05")
    for backend in BACKENDS:
        assert re.search(rf"test_it.py::test_blocks\[{backend}\] FAILED", output), output
        assert re.search(rf"test_it.py::test_starved\[{backend}\] PASSED", output), output
    assert "3 failed, 3 passed" in output, output
    assert re.search(r"asyncbridge: the event loop was starved for CPU, not blocked, in 3 test\(s\)", output)
    assert len(re.findall(r"event loop blocked for 0\.[2-9]\d\d s", output)) >= 3
    output = run_in_own_session(suite, "--blocking-threshold=0.05", "--blocking-fail-on-starvation")
    for backend in BACKENDS:
        assert re.search(rf"test_it.py::test_starved\[{backend}\] FAILED", output), output
    assert "6 failed" in output, output
    starved = r"event loop starved for \d\.\d{3} s.*: its thread was ready to run but waited \d\.\d{3} s for a CPU"
    assert re.search(starved, output), output
