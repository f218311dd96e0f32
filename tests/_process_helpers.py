"""Functions that the process tests (tests/test_process_*.py) run in worker processes.

They live in a module of their own, importable by name (pytest puts tests/ on
sys.path and workers get the parent's sys.path), because a worker can only run
a function it can import.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import resource
import signal
import socket
import sys
import threading
import time
from pathlib import Path

_greeting = "unset"


def add(a: int, b: int = 0) -> int:
    return a + b


def square(x: int) -> int:
    return x * x


def getpid() -> int:
    return os.getpid()


def raise_value_error(message: str) -> None:
    raise ValueError(message)


class NeedsTwoArguments(Exception):
    """An exception that pickles but cannot be unpickled: its __init__ wants two arguments."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")


def raise_needs_two_arguments() -> None:
    raise NeedsTwoArguments(7, "stuck")


def make_lock() -> threading.Lock:
    return threading.Lock()


def crash(how: str) -> None:
    """Die mid-call the way real workers do."""
    if how == "exit":
        os._exit(3)
    elif how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "segfault":
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file to write: die at once
        ctypes.string_at(0)
    time.sleep(60)  # a signal is delivered before this returns


def report_and_wait(port: int, value: object = None) -> object:
    """Send this worker's pid to the test listening on ``port``, then wait until it says go.

    While it waits the worker is busy with a call; if the worker is killed, the
    test sees its connection close.
    """
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(f"{os.getpid()}\n".encode())
        conn.recv(1)
    return value


def spin(n: int) -> int:
    """Pure-Python CPU work: about n loop steps."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def talk(lines: int) -> int:
    """Print a lot, including bytes that look like the channel's frames, then return."""
    for i in range(lines):
        print(f"chatty worker line {i} " + "x" * 200)
    sys.stdout.flush()
    sys.stdout.buffer.write(len(b"fake").to_bytes(8, "little") + pickle.dumps((2, "not a reply")))
    sys.stdout.buffer.flush()
    return 42


def print_and_log(tag: str) -> str:
    print(f"stdout from worker {tag}")
    print(f"stderr from worker {tag}", file=sys.stderr)
    logging.getLogger("worker").warning("logged from worker %s", tag)
    return tag


def set_greeting(greeting: str) -> None:
    global _greeting
    _greeting = greeting


def get_greeting() -> str:
    return _greeting


def failing_initializer(counter: str, flag: str) -> None:
    """Count this start attempt; fail while the flag file exists."""
    with open(counter, "a") as f:
        f.write("start\n")
    if Path(flag).exists():
        raise ValueError("database unreachable")


def exiting_initializer(code: int) -> None:
    os._exit(code)


def return_argument(value: object) -> object:
    return value


def block_forever() -> None:
    """An initializer that never returns: it waits for an event nobody sets."""
    threading.Event().wait()


def report_pid_then_block_forever(path: str) -> None:
    """An initializer that writes this worker's pid to ``path``, then never returns."""
    Path(path).write_text(str(os.getpid()))
    threading.Event().wait()


def fail_at(x: int, bad: int) -> int:
    """Return ``x``, or raise ValueError if it is ``bad``."""
    if x == bad:
        raise ValueError(f"bad item {x}")
    return x


def asyncbridge_imported(_: object = None) -> bool:
    """Whether this worker has imported the asyncbridge package (the default launcher's workers do not)."""
    return "asyncbridge" in sys.modules
