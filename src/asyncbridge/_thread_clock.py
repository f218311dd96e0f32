"""What the kernel says of one thread (Linux ``/proc``): its CPU time, its run-queue wait, what it sleeps on.

The blocking detector reads it to tell a blocked event loop (its thread ran
user code) from a starved one (the thread was runnable but waited for a CPU)
and from one that waited for the GIL (it slept on a futex while other threads
ran). Elsewhere than Linux, ``available`` is False and every reading is None.

The files are read through libc called with the GIL held (``ctypes.PyDLL``),
not ``os.read``, which lets go of the GIL: the watchdog reads what the loop
thread is doing while the loop thread cannot take the GIL, so a loop thread
seen asleep on a futex is still asleep there when the watchdog looks at the
rest (and reading costs no hand-over of the GIL, which under contention costs
a switch interval, 5 ms, each).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import Any

__all__ = ["Reading", "ThreadClock", "holds_gil"]

# (monotonic time, the thread's ns on a CPU, its ns runnable but waiting for one, the process's CPU seconds,
#  the times the thread was put on a CPU: each wake-up from a sleep counts one)
Reading = tuple[float, int, int, float, int]

_monotonic = time.monotonic


# The futex system call, where the loop thread sleeps for the GIL (and for any lock), per machine.
_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98, "i686": 240, "i386": 240}.get(
    platform.machine().lower()
)
_FUTEX_TEXT = str(_FUTEX).encode()


def _libc_calls() -> tuple[Any, Any, Any] | None:
    """libc's ``open``, ``pread`` and ``close``, called with the GIL held; None where ctypes cannot give them."""
    if sys.platform != "linux":
        return None
    try:
        import ctypes

        libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: the GIL stays held during the call
        open_, pread, close = libc.open, libc.pread, libc.close
    except (ImportError, OSError, AttributeError):
        return None
    open_.argtypes = [ctypes.c_char_p, ctypes.c_int]
    open_.restype = ctypes.c_int
    pread.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long]
    pread.restype = ctypes.c_ssize_t
    close.argtypes = [ctypes.c_int]
    close.restype = ctypes.c_int
    return open_, pread, close


_LIBC = _libc_calls()
holds_gil = _LIBC is not None  # whether /proc reads keep the GIL held


class ThreadClock:
    """What the kernel says about one thread of this process (Linux ``/proc``): CPU times, state, system call.

    Read from the watchdog thread only. ``available`` is False elsewhere, and
    every reading is then ``None``. Its files stay open until :meth:`close`.
    """

    def __init__(self, native_id: int) -> None:
        self._task = f"/proc/self/task/{native_id}"
        # (Without a look at the file system with libc reads: that would let go of the GIL. A file that
        # cannot be opened reads as None.)
        self.available = _LIBC is not None or (sys.platform == "linux" and os.path.exists(self._task + "/schedstat"))
        self._files: dict[str, int] = {}
        self._buffer: Any = None
        if _LIBC is not None:
            import ctypes

            self._buffer = ctypes.create_string_buffer(512)

    def _read(self, name: str) -> bytes:
        fd = self._files.get(name)
        if _LIBC is None:
            if fd is None:
                fd = self._files[name] = os.open(f"{self._task}/{name}", os.O_RDONLY)
            return os.pread(fd, 512, 0)
        open_, pread, _ = _LIBC
        if fd is None:
            fd = open_(f"{self._task}/{name}".encode(), os.O_RDONLY | os.O_CLOEXEC)
            if fd < 0:
                raise OSError(f"cannot open {self._task}/{name}")
            self._files[name] = fd
        buffer = self._buffer
        size = pread(fd, buffer, 511, 0)
        if size < 0:
            raise OSError(f"cannot read {self._task}/{name}")
        return bytes(buffer.raw[:size])

    def close(self) -> None:
        files, self._files = self._files, {}
        for fd in files.values():
            if _LIBC is None:
                os.close(fd)
            else:
                _LIBC[2](fd)

    def read(self) -> Reading | None:
        """``(now, ns on a CPU, ns runnable but waiting for a CPU, the process's CPU seconds, times put on a CPU)``."""
        if not self.available:
            return None
        try:
            run, wait, slices = self._read("schedstat").split()[:3]
            return _monotonic(), int(run), int(wait), time.process_time(), int(slices)
        except (OSError, ValueError):  # the thread has gone
            return None

    def system_call(self) -> bytes | None:
        """The system call the thread is in: its number, ``b"running"`` (runnable), or None if not known."""
        if not self.available:
            return None
        try:
            return self._read("syscall").split()[0]
        except (OSError, IndexError):  # no permission, or the thread has gone
            return None

    def may_wait_for_gil(self) -> bool:
        """Whether the thread may be waiting for the GIL: asleep in ``futex``, or runnable right now.

        Runnable because taking the GIL is a race the thread may be running
        (this watchdog just took the GIL to look). Asleep in any other system
        call (``time.sleep``, ``select``, a socket read), it does not wait for the GIL.
        """
        if _FUTEX is None:
            return False
        call = self.system_call()
        return call is not None and call in (b"running", _FUTEX_TEXT)

    def on_futex(self) -> bool:
        """Whether the thread is asleep in ``futex``: on a lock, the GIL being one."""
        return _FUTEX is not None and self.system_call() == _FUTEX_TEXT
