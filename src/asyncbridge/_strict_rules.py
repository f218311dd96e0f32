"""Strict mode's rule table: which calls block the event loop thread, and when they cannot.

Each :class:`Rule` names a known blocking call, where it lives, and, for most,
the predicate that tells from the call's arguments that it cannot block after
all (a non-blocking socket or file descriptor, ``acquire(blocking=False)``, a
free lock, ``sleep(0)``), and the stack frames under which the call is
expected and harmless. An :class:`AllowRule` is the user's own exception,
``[CALL@]MODULE[:FUNCTION]``, parsed by :func:`parse_allow`.

The rule set is versioned: rules are only ever added in a new version, so a
project that pins ``strict_rules=1`` is never surprised by a new rule. The
table in ``docs/detector.md`` lists every rule of every version
(:func:`format_rules` writes it).

Nothing here patches anything: ``_strict.py`` installs the rules and checks calls against them.
"""

from __future__ import annotations

import fnmatch
import functools
import ipaddress
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

__all__ = [
    "LATEST_VERSION",
    "RULES",
    "AllowRule",
    "Rule",
    "check_version",
    "format_rules",
    "frame_matches",
    "parse_allow",
    "rules_for",
]

LATEST_VERSION = 1

Predicate = Callable[..., bool]


# -- when a call cannot block ---------------------------------------------------


def _sleep_cannot_block(secs: object = None, *args: object, **kwargs: object) -> bool:
    return isinstance(secs, (int, float)) and secs <= 0


def _socket_cannot_block(sock: Any, *args: object, **kwargs: object) -> bool:
    return not sock.getblocking()


def _numeric_host(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    try:
        ipaddress.ip_address(host.partition("%")[0])  # an IPv6 scope id does not need a lookup either
    except ValueError:
        return False
    return True


def _getaddrinfo_cannot_block(
    host: object = None, port: object = None, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0
) -> bool:
    import socket

    return bool(flags & socket.AI_NUMERICHOST) or _numeric_host(host)


def _resolve_cannot_block(host: object = None, *args: object, **kwargs: object) -> bool:
    return _numeric_host(host)


def _getnameinfo_cannot_block(sockaddr: object = None, flags: int = 0) -> bool:
    import socket

    return bool(flags & socket.NI_NUMERICHOST) and bool(flags & socket.NI_NUMERICSERV)


def _fd_cannot_block(fd: int) -> bool:
    get_blocking = getattr(os, "get_blocking", None)  # not on Windows before 3.12
    if get_blocking is not None and not get_blocking(fd):
        return True
    # /dev/null never blocks (pytest's logging plugin writes every record there).
    stat = os.fstat(fd)
    return (stat.st_dev, stat.st_ino) == _devnull()


@functools.lru_cache(maxsize=1)
def _devnull() -> tuple[int, int]:
    try:
        stat = os.stat(os.devnull)
    except OSError:
        return (-1, -1)
    return (stat.st_dev, stat.st_ino)


def _file_fd(file: Any) -> int | None:
    try:
        fd: int = file.fileno()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        return None
    return fd


def _file_read_cannot_block(file: Any, *args: object, **kwargs: object) -> bool:
    fd = _file_fd(file)
    return fd is None or _fd_cannot_block(fd)  # no descriptor: an in-memory file


def _terminal_or_stdio(fd: int) -> bool:
    # Writing to the terminal, stdout or stderr is print() and logging: tolerated,
    # as blockbuster does; a pipe that is full would block, but rarely does.
    return fd in (1, 2) or os.isatty(fd)


def _is_stdio(file: object) -> bool:
    """Is ``file`` sys.stdout or sys.stderr (as replaced by pytest's capture, say), or a layer of them?"""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        layer: object = stream
        while layer is not None:
            if layer is file:
                return True
            layer = getattr(layer, "buffer", None) or getattr(layer, "raw", None)
    return False


def _file_write_cannot_block(file: Any, *args: object, **kwargs: object) -> bool:
    if _is_stdio(file):
        return True
    fd = _file_fd(file)
    return fd is None or _terminal_or_stdio(fd) or _fd_cannot_block(fd)


def _os_read_cannot_block(fd: int, *args: object, **kwargs: object) -> bool:
    return _fd_cannot_block(fd)


def _os_write_cannot_block(fd: int, *args: object, **kwargs: object) -> bool:
    return _terminal_or_stdio(fd) or _fd_cannot_block(fd)


def _lock_acquire_cannot_block(lock: Any, blocking: bool = True, timeout: float = -1) -> bool:
    return not blocking or timeout == 0 or not lock.locked()


def _lock_enter_cannot_block(lock: Any) -> bool:
    return not lock.locked()


def _join_cannot_block(thread: threading.Thread, timeout: float | None = None) -> bool:
    return timeout == 0 or not thread.is_alive()


def _wait_cannot_block(proc: Any, timeout: float | None = None) -> bool:
    return timeout == 0 or proc.returncode is not None


def _communicate_cannot_block(proc: Any, input: object = None, timeout: float | None = None) -> bool:
    return proc.returncode is not None and proc.stdin is None and proc.stdout is None and proc.stderr is None


def _waitpid_cannot_block(pid: int, options: int) -> bool:
    return bool(options & getattr(os, "WNOHANG", 0))


# -- the rule set ----------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A known blocking call: where it lives, and when it cannot block after all.

    ``name`` is what reports and allow rules call it; ``target`` is the
    dotted path of the module or class that holds ``attribute``.
    ``allowed_in`` lists ``(module, functions)`` of stack frames under which
    the call is expected and harmless (``functions`` empty means any).
    """

    name: str
    target: str
    attribute: str
    cannot_block: Predicate | None = None
    when: str = "always"
    allowed_in: tuple[tuple[str, frozenset[str]], ...] = ()
    since: int = 1


def _any(*modules: str) -> tuple[tuple[str, frozenset[str]], ...]:
    return tuple((module, frozenset()) for module in modules)


# Where the standard library and asyncbridge itself take a lock for a few
# instructions only: contention there is a wait of microseconds, not a block.
_SHORT_LOCKS: tuple[tuple[str, frozenset[str]], ...] = (
    ("asyncbridge", frozenset()),
    ("threading", frozenset({"start", "set", "clear", "notify", "notify_all", "_after_fork"})),
    ("queue", frozenset({"put_nowait", "get_nowait", "qsize", "empty", "full"})),
    ("concurrent.futures.thread", frozenset({"submit"})),
    (
        "concurrent.futures._base",
        frozenset(
            {
                "cancel",
                "done",
                "running",
                "cancelled",
                "set_result",
                "set_exception",
                "set_running_or_notify_cancel",
                "add_done_callback",
            }
        ),
    ),
    ("_frozen_importlib", frozenset()),
    ("importlib", frozenset()),
)
# Reading source files for tracebacks and imports happens everywhere, and once.
_IMPORTS_AND_TRACEBACKS = _any("_frozen_importlib", "_frozen_importlib_external", "importlib", "linecache", "zipimport")

# Starting a process waits for its exec through a pipe, briefly; asyncio does it on the loop.
_POPEN_START: tuple[tuple[str, frozenset[str]], ...] = (("subprocess", frozenset({"_execute_child"})),)

_SOCKET_WHEN = "unless the socket is non-blocking"
_READ_WHEN = "unless the file is in memory, /dev/null, or its descriptor is non-blocking"
_WRITE_WHEN = "unless the file is in memory, stdout, stderr, a terminal or /dev/null, or its descriptor is non-blocking"


def _socket_rules(target: str, methods: Iterable[str], since: int = 1) -> list[Rule]:
    return [Rule(f"{target}.{m}", target, m, _socket_cannot_block, _SOCKET_WHEN, since=since) for m in methods]


def _file_rules(target: str, reads: Iterable[str], writes: Iterable[str]) -> list[Rule]:
    rules = [
        Rule(f"{target}.{m}", target, m, _file_read_cannot_block, _READ_WHEN, _IMPORTS_AND_TRACEBACKS) for m in reads
    ]
    rules += [Rule(f"{target}.{m}", target, m, _file_write_cannot_block, _WRITE_WHEN) for m in writes]
    return rules


_SOCKET_METHODS = (
    "accept", "connect", "connect_ex", "recv", "recv_into", "recvfrom", "recvfrom_into",
    "recvmsg", "recvmsg_into", "send", "sendall", "sendto", "sendmsg", "sendfile",
)  # fmt: skip

RULES: tuple[Rule, ...] = (
    Rule("time.sleep", "time", "sleep", _sleep_cannot_block, "unless the delay is 0 or less"),
    *_socket_rules("socket.socket", _SOCKET_METHODS),
    Rule("socket.getaddrinfo", "socket", "getaddrinfo", _getaddrinfo_cannot_block,
         "unless the host is None or a numeric address, or flags has AI_NUMERICHOST"),
    Rule("socket.gethostbyname", "socket", "gethostbyname", _resolve_cannot_block,
         "unless the host is a numeric address"),
    Rule("socket.gethostbyname_ex", "socket", "gethostbyname_ex", _resolve_cannot_block,
         "unless the host is a numeric address"),
    Rule("socket.gethostbyaddr", "socket", "gethostbyaddr"),
    Rule("socket.getnameinfo", "socket", "getnameinfo", _getnameinfo_cannot_block,
         "unless flags has NI_NUMERICHOST and NI_NUMERICSERV"),
    *_socket_rules("ssl.SSLSocket", ("read", "write", "recv", "recv_into", "send", "sendall", "do_handshake")),
    *_file_rules("io.FileIO", ("read", "readall", "readinto"), ("write",)),
    *_file_rules("io.BufferedReader", ("read", "read1", "readinto", "readline"), ()),
    *_file_rules("io.BufferedWriter", (), ("write",)),
    *_file_rules("io.BufferedRandom", ("read", "read1", "readinto", "readline"), ("write",)),
    *_file_rules("io.TextIOWrapper", ("read", "readline"), ("write",)),
    Rule("io.IOBase.readlines", "_io._IOBase", "readlines", _file_read_cannot_block, _READ_WHEN,
         _IMPORTS_AND_TRACEBACKS),
    Rule("os.read", "os", "read", _os_read_cannot_block, "unless the descriptor is non-blocking or /dev/null",
         _POPEN_START),
    Rule("os.write", "os", "write", _os_write_cannot_block,
         "unless the descriptor is stdout, stderr, a terminal, /dev/null or non-blocking"),
    Rule("builtins.input", "builtins", "input"),
    Rule("threading.Lock.acquire", "_thread.LockType", "acquire", _lock_acquire_cannot_block,
         "unless blocking=False, timeout=0, or the lock is free", _SHORT_LOCKS),
    Rule("threading.Lock.__enter__", "_thread.LockType", "__enter__", _lock_enter_cannot_block,
         "(`with lock:`) unless the lock is free", _SHORT_LOCKS),
    Rule("threading.Thread.join", "threading.Thread", "join", _join_cannot_block,
         "unless timeout=0 or the thread has finished"),
    Rule("subprocess.Popen.wait", "subprocess.Popen", "wait", _wait_cannot_block,
         "unless timeout=0 or the process has been reaped",
         (("trio._subprocess", frozenset({"wait"})),)),  # reaps a child its pidfd says has exited
    Rule("subprocess.Popen.communicate", "subprocess.Popen", "communicate", _communicate_cannot_block,
         "unless the process has been reaped and has no pipes"),
    Rule("os.waitpid", "os", "waitpid", _waitpid_cannot_block, "unless options has WNOHANG",
         (*_any("asyncio.unix_events"), *_POPEN_START)),  # the pidfd watcher reaps a child that exited
    *[Rule(f"sqlite3.Connection.{m}", "sqlite3.Connection", m)
      for m in ("execute", "executemany", "executescript", "commit", "rollback")],
    *[Rule(f"sqlite3.Cursor.{m}", "sqlite3.Cursor", m)
      for m in ("execute", "executemany", "executescript", "fetchone", "fetchmany", "fetchall")],
    Rule("sqlite3.connect", "sqlite3", "connect"),
)  # fmt: skip


def rules_for(version: int) -> tuple[Rule, ...]:
    """Return the rules of rule set ``version``."""
    return tuple(rule for rule in RULES if rule.since <= version)


def format_rules(version: int = LATEST_VERSION) -> str:
    """Return the rule set ``version`` as a Markdown table (what docs/detector.md shows)."""
    lines = ["| rule | since | fires | never under (built-in allow rules) |", "|---|---|---|---|"]
    for rule in rules_for(version):
        under = ", ".join(
            f"`{module}`" if not functions else f"`{module}:{'/'.join(sorted(functions))}`"
            for module, functions in rule.allowed_in
        )
        lines.append(f"| `{rule.name}` | {rule.since} | {rule.when} | {under} |")
    return "\n".join(lines)


def check_version(version: object) -> int:
    """Return the rule set version ``strict_rules=version`` asks for, or raise TypeError/ValueError."""
    if version is None:
        return LATEST_VERSION
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"strict_rules must be an int rule set version, got {version!r}")
    if not 1 <= version <= LATEST_VERSION:
        raise ValueError(f"strict_rules={version} is not a known rule set; versions are 1 to {LATEST_VERSION}")
    return version


# -- allow rules -----------------------------------------------------------------

_ALLOW_SYNTAX = re.compile(
    r"^(?:(?P<call>[\w.*?\[\]]+)@)?(?P<module>[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)*)(?::(?P<function>[\w.<>]+))?$"
)


@dataclass(frozen=True)
class AllowRule:
    """``[CALL@]MODULE[:FUNCTION]``: allow calls made under a frame of MODULE (or its submodules).

    ``CALL`` is a rule name or an ``fnmatch`` pattern of rule names (``"socket.*"``);
    without it, every rule. ``FUNCTION`` is a function's name or, from Python
    3.11, its qualified name (``"Client.fetch"``); without it, any function.
    """

    text: str
    module: str
    function: str | None = None
    call: str | None = None

    def allows(self, rule: Rule) -> bool:
        return self.call is None or fnmatch.fnmatchcase(rule.name, self.call)


def parse_allow(text: object) -> AllowRule:
    """Parse one allow rule, or raise TypeError/ValueError saying what is wrong."""
    if not isinstance(text, str):
        raise TypeError(f"allow rules are strings like 'time.sleep@mypackage.module:function', got {text!r}")
    match = _ALLOW_SYNTAX.match(text.strip())
    if match is None:
        raise ValueError(
            f"allow rule {text!r} is not of the form [CALL@]MODULE[:FUNCTION], "
            "for example 'mypackage.legacy', 'time.sleep@mypackage.legacy' or 'mypackage.legacy:load'"
        )
    return AllowRule(text, match["module"], match["function"], match["call"])


def frame_matches(module: str, function: str | None, frame: FrameType) -> bool:
    """Does ``frame`` run code of ``module`` (or a submodule), in ``function`` (a name or qualified name) if given?"""
    name = frame.f_globals.get("__name__")
    if not isinstance(name, str) or (name != module and not name.startswith(module + ".")):
        return False
    if function is None:
        return True
    code = frame.f_code
    return function == code.co_name or function == getattr(code, "co_qualname", None)
