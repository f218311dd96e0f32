"""What server workers add: processes, each with its own event loop and its own GIL.

    python examples/guides/workers.py [--plot workers.svg]

The app below has one endpoint that runs 0.1 s of pure Python right in an
``async def`` (the mistake that stalls a loop). The script serves it on
127.0.0.1 with ``uvicorn --workers 1``, ``uvicorn --workers 2`` and
``gunicorn -w 2 -k uvicorn.workers.UvicornWorker``, sends 8 requests at once
to each, and prints how long the 8 took and how many processes answered.
One worker answers them one after the other; two workers are two processes
that each run a loop, so on 2 CPUs the 8 take about half as long. Inside each
worker, the stall is still there: a worker's requests still wait for each
other. ``--plot`` draws which worker process handled which request when.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REQUESTS = 8
WORK = 0.1


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A bare ASGI app: spin WORK s in the coroutine, answer with the pid and when it worked."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    began = time.monotonic()  # CLOCK_MONOTONIC: the same clock in every process of the machine
    deadline = began + WORK
    while time.monotonic() < deadline:
        pass
    body = f"{os.getpid()} {began} {time.monotonic()}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int) -> str:
    """One HTTP/1.0 request on a connection of its own; the response body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def serve(command: list[str], workers: int) -> subprocess.Popen[str]:
    """Start the server; return once it listens and each of its workers has logged that it is up."""
    server = subprocess.Popen(command, cwd=HERE, stderr=subprocess.PIPE, text=True)
    up = threading.Semaphore(0)

    def watch() -> None:
        assert server.stderr is not None
        for line in server.stderr:
            if any(sign in line for sign in ("Application startup complete", "Uvicorn running on", "Listening at")):
                up.release()

    threading.Thread(target=watch, daemon=True).start()
    for _ in range(workers + 1):
        if not up.acquire(timeout=30):
            server.kill()
            raise RuntimeError(f"{command[2]} did not start {workers} workers in 30 s")
    return server


def burst(port: int) -> tuple[float, list[tuple[int, float, float]]]:
    """Send REQUESTS requests at once; the seconds until the last answer, and (pid, start, end) of each."""
    answers: list[str] = []
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: answers.append(get(port))) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took = time.monotonic() - started
    handled = []
    for answer in answers:
        pid, began, ended = answer.split()
        handled.append((int(pid), float(began) - started, float(ended) - started))
    return took, handled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", metavar="SVG", help="also draw which worker handled which request when")
    args = parser.parse_args()

    python = sys.executable
    servers = {
        "uvicorn --workers 1": (["uvicorn", "--workers", "1"], 1),
        "uvicorn --workers 2": (["uvicorn", "--workers", "2"], 2),
        "gunicorn -w 2": (["gunicorn", "-w", "2", "-k", "uvicorn.workers.UvicornWorker"], 2),
    }
    results: dict[str, list[tuple[int, float, float]]] = {}
    print(f"{REQUESTS} requests at once, each {WORK} s of pure Python in an async def endpoint:")
    for label, (argv, workers) in servers.items():
        port = free_port()
        if argv[0] == "uvicorn":
            command = [python, "-m", "uvicorn", "workers:app", "--port", str(port), "--no-access-log", *argv[1:]]
        else:
            command = [python, "-m", "gunicorn", "workers:app", "-b", f"127.0.0.1:{port}", *argv[1:]]
        server = serve(command, workers)
        try:
            get(port)  # warm up
            took, handled = burst(port)
        finally:
            server.terminate()
            server.wait(timeout=30)
        results[label] = handled
        processes = len({pid for pid, _, _ in handled})
        print(f"  {label:20} took {took:.2f} s, answered by {processes} process{'es' if processes > 1 else ''}")

    if args.plot:
        from _svg import Lane, Span, timeline

        lanes = []
        for label, handled in results.items():
            pids = sorted({pid for pid, _, _ in handled})
            for number, pid in enumerate(pids, 1):
                spans = [Span(b, e, f"{label}: a request") for p, b, e in handled if p == pid]
                lanes.append(Lane(f"{label}: process {number}", spans))
        title = f"{REQUESTS} requests of {WORK} s CPU each: which worker process handled which, when"
        timeline(args.plot, title, lanes)


if __name__ == "__main__":
    main()
