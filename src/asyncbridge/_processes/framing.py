"""The wire format between the parent and a worker process: frames of pickle on pipes of their own.

Standard library only, and nothing from the rest of asyncbridge, like
:mod:`.worker`, which the default launcher loads together with this module in
a fresh interpreter without importing the asyncbridge package.

The channel is two pipes of the worker's own, never its stdout or stderr (which
stay the parent's, so what a worker prints or logs shows where the parent's
output goes). Both directions carry frames: an 8-byte little-endian length,
then that many bytes of pickle.

- parent -> worker: first an init frame ``(sys_path, main_reference,
  initializer)``; then one frame per call, ``(fn, args, kwargs)`` pickled in the
  parent; an empty frame (:data:`STOP_FRAME`) asks the worker to exit.
- worker -> parent: ``(READY,)`` once the initializer has run, or
  ``(START_FAILED, exc, traceback_text, description)`` before it exits; then one
  reply per call: ``(RESULT, value)``, or ``(RAISED, exc, traceback_text,
  description)`` where ``exc`` is None if the exception could not be pickled
  and ``description`` then says what it was.

A third pipe is never written: the worker only waits for it to reach end of
file, which happens when the parent process is gone however it died, and then
exits at once. So no worker outlives its parent, even one killed with SIGKILL.

The worker reads and writes with blocking calls (:func:`read_frame`,
:func:`write_frame`); the parent writes without blocking and reads replies as
they come with a :class:`FrameReader`.
"""

from __future__ import annotations

import os
import pickle

# typing is not imported at run time: it alone costs a worker a few milliseconds of start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "HEADER_SIZE",
    "PROTOCOL",
    "RAISED",
    "READY",
    "RESULT",
    "START_FAILED",
    "STOP_FRAME",
    "FrameReader",
    "framed",
    "read_frame",
    "write_frame",
]

# The kinds of message a worker sends: the first item of each.
READY = 0
START_FAILED = 1
RESULT = 2
RAISED = 3

HEADER_SIZE = 8
PROTOCOL = pickle.HIGHEST_PROTOCOL
STOP_FRAME = bytes(HEADER_SIZE)  # an empty frame: "exit now"
_READ_SIZE = 65536


def framed(data: bytes) -> bytes:
    """``data`` as one frame: its length, then itself."""
    return len(data).to_bytes(HEADER_SIZE, "little") + data


# -- the worker's side: blocking ------------------------------------------------


def read_frame(requests: Any) -> bytearray | None:
    """The next frame from the unbuffered binary file ``requests``; None at end of file."""
    header = _read_exact(requests, HEADER_SIZE)
    if header is None:
        return None
    return _read_exact(requests, int.from_bytes(header, "little"))


def _read_exact(requests: Any, size: int) -> bytearray | None:
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = requests.readinto(view[got:])
        if not n:
            return None
        got += n
    return buffer


def write_frame(fd: int, data: bytes) -> None:
    """Write ``data`` as one frame to the blocking pipe ``fd``."""
    size = len(data).to_bytes(HEADER_SIZE, "little")
    if len(data) < 65536:
        _write_all(fd, size + data)
    else:  # no copy of a large reply just to prepend eight bytes
        _write_all(fd, size)
        _write_all(fd, data)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# -- the parent's side: non-blocking --------------------------------------------


class FrameReader:
    """Splits what a non-blocking reply pipe delivers into frames, a read at a time."""

    __slots__ = ("buffer", "large", "large_got")

    def __init__(self) -> None:
        self.buffer = bytearray()  # bytes read but not yet a whole frame
        self.large: bytearray | None = None  # a frame too large for one read, being filled
        self.large_got = 0

    def read(self, fd: int) -> tuple[list[bytearray], bool]:
        """Read what the pipe ``fd`` holds (one read: the selector is level-triggered).

        Returns the whole frames received and whether the pipe reached end of file.
        """
        frames: list[bytearray] = []
        large = self.large
        try:
            if large is not None:
                n = os.readv(fd, [memoryview(large)[self.large_got :]])
                if n == 0:
                    return frames, True
                self.large_got += n
                if self.large_got == len(large):
                    frames.append(large)
                    self.large = None
                return frames, False
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return frames, False
        except OSError:
            return frames, True
        if not data:
            return frames, True
        buffer = self.buffer
        buffer += data
        while len(buffer) >= HEADER_SIZE:
            size = int.from_bytes(buffer[:HEADER_SIZE], "little")
            end = HEADER_SIZE + size
            if len(buffer) >= end:
                frames.append(buffer[HEADER_SIZE:end])
                del buffer[:end]
            elif size > _READ_SIZE:  # read the rest straight into a buffer of its own
                large = bytearray(size)
                have = len(buffer) - HEADER_SIZE
                large[:have] = buffer[HEADER_SIZE:]
                self.large, self.large_got = large, have
                buffer.clear()
                break
            else:
                break
        return frames, False
