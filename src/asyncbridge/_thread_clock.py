"""What the kernel says of one thread (Linux ``/proc``): its CPU time, its run-queue wait, what it sleeps on.

The blocking detector reads it to tell a blocked event loop (its thread ran
user code) from a starved one (the thread was runnable but waited for a CPU)
and from one that waited for the GIL (it slept on a futex while other threads
ran). Elsewhere than Linux, ``available`` is False and every reading is None.
"""

from __future__ import annotations

import os
import platform
import sys
import time

__all__ = ["Reading", "ThreadClock"]

# (monotonic time, the thread's ns on a CPU, its ns runnable but waiting for one, the process's CPU seconds)
Reading = tuple[float, int, int, float]

_monotonic = time.monotonic


# The futex system call, where the loop thread sleeps for the GIL (and for any lock), per machine.
_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98, "i686": 240, "i386": 240}.get(
    platform.machine().lower()
)


class ThreadClock:
    """What the kernel says about one thread of this process (Linux ``/proc``): CPU times, state, system call.

    Read from the watchdog thread only. ``available`` is False elsewhere, and
    every reading is then ``None``.
    """

    def __init__(self, native_id: int, *, keep_open: bool = False) -> None:
        self._task = f"/proc/self/task/{native_id}"
        self.available = sys.platform == "linux" and os.path.exists(self._task + "/schedstat")
        # The loop thread's files stay open: one system call (one hand-over of the GIL) per reading.
        self._keep_open = keep_open
        self._files: dict[str, int] = {}

    def _read(self, name: str) -> bytes:
        fd = self._files.get(name)
        if fd is None:
            fd = os.open(f"{self._task}/{name}", os.O_RDONLY)
            if not self._keep_open:
                try:
                    return os.read(fd, 512)
                finally:
                    os.close(fd)
            self._files[name] = fd
        return os.pread(fd, 512, 0)

    def close(self) -> None:
        files, self._files = self._files, {}
        for fd in files.values():
            os.close(fd)

    def read(self) -> Reading | None:
        """``(now, ns on a CPU, ns runnable but waiting for a CPU, the process's CPU seconds)``."""
        if not self.available:
            return None
        try:
            run, wait = self._read("schedstat").split()[:2]
            return _monotonic(), int(run), int(wait), time.process_time()
        except (OSError, ValueError):  # the thread has gone
            return None

    def may_wait_for_gil(self) -> bool:
        """Whether the thread may be waiting for the GIL: asleep in ``futex``, or on a CPU right now.

        On a CPU because taking the GIL is a race the thread may be running
        (this watchdog just took the GIL to look). Asleep in any other system
        call (``time.sleep``, ``select``, a socket read), it does not wait for the GIL.
        """
        if _FUTEX is None or not self.available:
            return False
        try:
            call = self._read("syscall").split()[0]
        except (OSError, IndexError):  # no permission, or the thread has gone
            return False
        return call in (b"running", str(_FUTEX).encode())


# Where an asyncio loop thread waits for I/O, (file name ending, function): innermost there, it is idle.
