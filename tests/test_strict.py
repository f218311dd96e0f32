"""Strict mode: known blocking calls on the loop thread reported or refused, nowhere else."""

from __future__ import annotations

import _thread
import io
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import asyncbridge
from _detector_blockers import NAP_LINE, nap
from asyncbridge import BlockingCallError, BlockingDetector, _strict_rules

# These tests make blocking calls on purpose, each under its own detector.
pytestmark = [pytest.mark.anyio, pytest.mark.blocking_detector(enabled=False)]

QUIET = 10.0  # a lag threshold no test reaches: these tests are about strict mode alone
DOCS = Path(__file__).parent.parent / "docs" / "detector.md"


def here() -> int:
    """The line number of the caller's next line."""
    return sys._getframe(1).f_lineno + 1


async def test_sleep_on_the_loop_thread_is_reported_with_its_duration_and_line() -> None:
    """strict=True records time.sleep on the loop thread as an event: the call, its duration, the line."""
    async with BlockingDetector(QUIET, strict=True) as detector:
        task_name = anyio.get_current_task().name
        t0 = time.monotonic()
        line = here()
        time.sleep(0.1)
        real = time.monotonic() - t0
    [event] = detector.events
    assert event.call == "time.sleep"
    assert real - 0.02 <= event.duration <= real
    assert (event.stack[-1].filename, event.stack[-1].lineno) == (__file__, line)
    assert event.stack[-1].line == "time.sleep(0.1)"
    assert event.task_name == task_name
    assert event.format().startswith("blocking call time.sleep() on the event loop thread took 0.1")


async def test_raise_mode_refuses_the_call_before_it_runs() -> None:
    """strict='raise' raises BlockingCallError at once, naming the call, the line and the fixes."""
    async with BlockingDetector(QUIET, strict="raise") as detector:
        t0 = time.monotonic()
        line = here()
        with pytest.raises(BlockingCallError) as info:
            time.sleep(30)
        assert time.monotonic() - t0 < 5
    message = str(info.value)
    assert message.startswith("time.sleep() called on the event loop thread (task ")
    assert f"{__file__}:{line + 1}: it blocks every other task while it runs" in message
    assert "await asyncbridge.to_thread(...)" in message
    assert "@asyncbridge.async_wrap" in message
    assert "allow=['time.sleep@test_strict']" in message
    [event] = detector.events
    assert (event.call, event.duration) == ("time.sleep", 0.0)


def _read_file() -> None:
    with open(__file__, "rb") as file:
        file.read(10)


async def test_the_same_calls_in_worker_threads_are_never_reported() -> None:
    """Blocking calls made in asyncbridge's, anyio's and a plain thread pass, even in raise mode."""
    lock = threading.Lock()

    def blocking_work() -> None:
        time.sleep(0.01)
        _read_file()
        with lock:
            pass

    async with BlockingDetector(QUIET, strict="raise") as detector:
        await asyncbridge.to_thread(blocking_work)
        await asyncbridge.async_wrap(blocking_work)()
        with asyncbridge.ThreadExecutor(2) as executor:
            await executor.run(blocking_work)
        await anyio.to_thread.run_sync(blocking_work)
        thread = threading.Thread(target=blocking_work)
        thread.start()
        await anyio.to_thread.run_sync(thread.join)
    assert detector.events == []


@contextmanager
def _socketpair(blocking: bool) -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair()
    with a, b:
        a.setblocking(blocking)
        b.setblocking(blocking)
        yield a, b


async def test_calls_that_cannot_block_are_not_reported() -> None:
    """Non-blocking sockets and fds, free locks, blocking=False, timeout=0, sleep(0), stdio pass."""
    held = threading.Lock()
    held.acquire()
    free = threading.Lock()
    done = threading.Thread(target=lambda: None)
    done.start()
    done.join()
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    try:
        async with BlockingDetector(QUIET, strict="raise") as detector:
            time.sleep(0)
            with _socketpair(blocking=False) as (a, b):
                a.send(b"x")
                await anyio.wait_readable(b)
                assert b.recv(1) == b"x"
            os.write(write_fd, b"y")
            assert os.read(read_fd, 1) == b"y"
            assert not held.acquire(blocking=False)
            assert not held.acquire(timeout=0)
            with free:
                pass
            assert free.acquire()
            free.release()
            assert io.BytesIO(b"z").read() == b"z"
            print("printing is fine")
            sys.stderr.write("so is stderr\n")
            assert socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)
            done.join()
        assert detector.events == []
    finally:
        held.release()
        os.close(read_fd)
        os.close(write_fd)


Case = Callable[[], tuple[Callable[[], object], Callable[[], None]]]
# Each case looks its call up when it is made: a bound method taken before strict
# mode patched the type would call the original (a documented limitation).


def _blocking_socket() -> tuple[Callable[[], object], Callable[[], None]]:
    a, b = socket.socketpair()
    a.sendall(b"x")  # data waiting: even if allowed, the call would not hang the test

    def cleanup() -> None:
        a.close()
        b.close()

    return lambda: b.recv(1), cleanup


def _blocking_pipe() -> tuple[Callable[[], object], Callable[[], None]]:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"x")

    def cleanup() -> None:
        os.close(read_fd)
        os.close(write_fd)

    return lambda: os.read(read_fd, 1), cleanup


def _held_lock(use_with: bool) -> Case:
    def case() -> tuple[Callable[[], object], Callable[[], None]]:
        lock = threading.Lock()
        lock.acquire()

        def enter() -> None:
            with lock:
                pass

        return (enter if use_with else lambda: lock.acquire()), lock.release

    return case


def _alive_thread() -> tuple[Callable[[], object], Callable[[], None]]:
    go = threading.Event()
    thread = threading.Thread(target=go.wait)
    thread.start()

    def cleanup() -> None:
        go.set()
        thread.join()

    return lambda: thread.join(), cleanup


def _running_process() -> tuple[Callable[[], object], Callable[[], None]]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    def cleanup() -> None:
        process.kill()
        process.wait()

    return lambda: process.wait(), cleanup


def _file_read() -> tuple[Callable[[], object], Callable[[], None]]:
    file = open(__file__, encoding="utf-8")  # noqa: SIM115
    return lambda: file.read(), file.close


def _file_write(tmp: list[Path]) -> Case:
    def case() -> tuple[Callable[[], object], Callable[[], None]]:
        file = open(tmp[0], "wb")  # noqa: SIM115
        return lambda: file.write(b"data"), file.close

    return case


def _sqlite() -> tuple[Callable[[], object], Callable[[], None]]:
    connection = sqlite3.connect(":memory:")
    return lambda: connection.execute("select 1"), connection.close


def _nothing() -> None:
    pass


_tmp: list[Path] = []

BLOCKING_CASES: list[tuple[str, Case]] = [
    ("socket.socket.recv", _blocking_socket),
    ("os.read", _blocking_pipe),
    ("threading.Lock.acquire", _held_lock(use_with=False)),
    ("threading.Lock.__enter__", _held_lock(use_with=True)),
    ("threading.Thread.join", _alive_thread),
    ("subprocess.Popen.wait", _running_process),
    ("io.TextIOWrapper.read", _file_read),
    ("io.BufferedWriter.write", _file_write(_tmp)),
    ("sqlite3.Connection.execute", _sqlite),
    ("socket.getaddrinfo", lambda: (lambda: socket.getaddrinfo("localhost", 80), _nothing)),
    ("time.sleep", lambda: (lambda: time.sleep(30), _nothing)),
]


@pytest.fixture
def tmp_file(tmp_path: Path) -> Iterator[None]:
    _tmp[:] = [tmp_path / "out.bin"]
    yield
    _tmp.clear()


@pytest.mark.parametrize(("rule", "case"), BLOCKING_CASES, ids=[rule for rule, _ in BLOCKING_CASES])
@pytest.mark.usefixtures("tmp_file")
async def test_known_blocking_calls_are_refused_on_the_loop_thread(rule: str, case: Case) -> None:
    """Each kind of blocking call (socket, fd, lock, join, wait, file, sqlite, DNS, sleep) is caught."""
    call, cleanup = case()
    try:
        async with BlockingDetector(QUIET, strict="raise") as detector:
            with pytest.raises(BlockingCallError, match=rf"^{rule.replace('.', '[.]')}\(\) called on the event loop"):
                call()
    finally:
        cleanup()
    assert [event.call for event in detector.events] == [rule]


async def test_allow_rules_let_calls_through_and_unused_ones_are_reported() -> None:
    """Allow rules match by call, module and function; unused_allow_rules() lists those that never did."""
    allow = ["time.sleep@_detector_blockers:nap", "socket.*@nowhere.at.all", "os.read@_detector_blockers"]
    async with BlockingDetector(QUIET, strict="raise", allow=allow) as detector:
        assert detector.unused_allow_rules() == allow
        nap(0.01)  # allowed: time.sleep under _detector_blockers.nap
        with pytest.raises(BlockingCallError):
            time.sleep(0.01)  # not under nap
        assert detector.unused_allow_rules() == allow[1:]
    assert detector.unused_allow_rules() == allow[1:]
    assert [event.stack[-1].lineno for event in detector.events] != [NAP_LINE]


async def test_allow_rule_without_call_allows_every_rule_in_that_module() -> None:
    """An allow rule naming only a module lets any known blocking call made under it through."""
    async with BlockingDetector(QUIET, strict="raise", allow=["_detector_blockers"]) as detector:
        nap(0.01)
    assert detector.events == []
    assert detector.unused_allow_rules() == []


async def test_nested_strict_detectors_apply_their_own_allow_rules() -> None:
    """An inner detector's allow rule does not hide the call from an outer detector without it."""
    inner = BlockingDetector(QUIET, strict=True, allow=["time.sleep@test_strict"])
    async with BlockingDetector(QUIET, strict=True) as outer, inner:
        time.sleep(0.01)
    assert [event.call for event in outer.events] == ["time.sleep"]
    assert inner.events == []


async def test_patches_are_in_place_only_while_a_strict_detector_is_active() -> None:
    """The original calls come back when the last strict detector exits; non-strict ones patch nothing."""
    sleep, acquire = time.sleep, _thread.LockType.__dict__["acquire"]
    async with BlockingDetector(QUIET):
        assert time.sleep is sleep
    async with BlockingDetector(QUIET, strict=True):
        assert time.sleep is not sleep
        assert time.sleep.__wrapped__ is sleep
        async with BlockingDetector(QUIET, strict="raise"):
            pass
        assert time.sleep is not sleep  # the outer one is still active
        assert _thread.LockType.__dict__["acquire"] is not acquire
    assert time.sleep is sleep
    assert _thread.LockType.__dict__["acquire"] is acquire
    assert "recv" not in socket.socket.__dict__  # inherited from _socket.socket, as before


async def test_a_loop_in_another_thread_is_not_watched() -> None:
    """Strict mode on this loop does not reach another thread's event loop."""

    async def other_loop() -> None:
        time.sleep(0.01)

    async with BlockingDetector(QUIET, strict="raise") as detector:
        await anyio.to_thread.run_sync(lambda: anyio.run(other_loop))
    assert detector.events == []


async def test_everyday_async_code_is_not_reported(anyio_backend: Any) -> None:
    """Threads, subprocesses, loopback TCP, logging and printing through the async libraries pass."""

    async def handle(stream: Any) -> None:
        async with stream:
            await stream.send(await stream.receive())

    async with BlockingDetector(QUIET, strict="raise") as detector:
        await asyncbridge.to_thread(time.sleep, 0.01)
        await anyio.to_thread.run_sync(time.sleep, 0.01)
        result = await anyio.run_process([sys.executable, "-c", "print('ok')"])
        assert result.stdout.strip() == b"ok"
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, handle)
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                await client.send(b"ping")
                assert await client.receive() == b"ping"
            tg.cancel_scope.cancel()
        logging.getLogger("asyncbridge.test").warning("logging to stderr is fine")
        if anyio_backend[0] == "asyncio":
            import asyncio

            await asyncio.to_thread(time.sleep, 0.01)
            await asyncio.get_running_loop().run_in_executor(None, time.sleep, 0.01)
    assert detector.events == []


def test_rule_versions_and_the_docs_table() -> None:
    """Rule set 1 is the latest; docs/detector.md lists every one of its rules with when it fires."""
    assert _strict_rules.LATEST_VERSION == 1
    names = [rule.name for rule in _strict_rules.rules_for(1)]
    assert len(names) == len(set(names))
    assert {"time.sleep", "socket.socket.recv", "io.BufferedReader.read", "threading.Lock.acquire",
            "subprocess.Popen.wait", "builtins.input"} <= set(names)  # fmt: skip
    assert _strict_rules.format_rules(1) in DOCS.read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="strict_rules=2 is not a known rule set; versions are 1 to 1"):
        BlockingDetector(strict=True, strict_rules=2)
    BlockingDetector(strict=True, strict_rules=1)


@pytest.mark.parametrize(
    ("text", "module", "function", "call"),
    [
        ("pkg", "pkg", None, None),
        ("pkg.sub:load", "pkg.sub", "load", None),
        ("time.sleep@pkg.sub", "pkg.sub", None, "time.sleep"),
        ("socket.*@pkg:Client.fetch", "pkg", "Client.fetch", "socket.*"),
    ],
)
def test_allow_rule_syntax(text: str, module: str, function: str | None, call: str | None) -> None:
    """Allow rules parse as [CALL@]MODULE[:FUNCTION]."""
    rule = _strict_rules.parse_allow(text)
    assert (rule.text, rule.module, rule.function, rule.call) == (text, module, function, call)


@pytest.mark.parametrize("text", ["", "pkg:", "@pkg", "pkg sub", "1pkg", "pkg:a:b"])
def test_malformed_allow_rules_are_rejected(text: str) -> None:
    """A malformed allow rule is a ValueError that shows the expected form."""
    with pytest.raises(ValueError, match=r"is not of the form \[CALL@\]MODULE\[:FUNCTION\]"):
        BlockingDetector(strict=True, allow=[text])


def test_a_single_allow_rule_string_is_one_rule() -> None:
    """allow='pkg' is taken as one rule, not as the letters p, k, g."""
    assert BlockingDetector(strict=True, allow="pkg").unused_allow_rules() == ["pkg"]
