"""Serving an example app for real: uvicorn in a child process, on a socket bound here on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


@contextlib.contextmanager
def uvicorn_process(
    app: str, *, env: dict[str, str] | None = None, args: tuple[str, ...] = (), cwd: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``uvicorn app`` (from examples/) in a child process; yield its base URL and the process.

    With ``cwd``, uvicorn runs in that folder and imports the app from it, as
    ``uvicorn app`` typed there does.

    The socket is bound and listening before the child starts (uvicorn gets its
    descriptor with --fd), so clients can connect at once: no polling for the
    server to come up. The child is stopped, and killed if it must be, at the end.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    command = [sys.executable, "-m", "uvicorn", app, "--app-dir", str(cwd or EXAMPLES), "--fd", str(sock.fileno())]
    command += ["--log-level", "warning", *args]
    child_env = {**os.environ, **(env or {})}
    process = subprocess.Popen(command, pass_fds=[sock.fileno()], env=child_env, cwd=cwd)
    sock.close()  # the child has its own copy
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
