"""Done-when: a real FastAPI app under uvicorn on 127.0.0.1, hit by httpx, in code and under watch."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import uvicorn

from asyncbridge import BlockingDetector, BlockingEvent

EXAMPLES = Path(__file__).parent.parent / "examples"
APP_FILE = EXAMPLES / "fastapi_blocking.py"
LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(sys.platform == "win32", reason="no uvloop"))]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fastapi_blocking", APP_FILE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def loop_lines(fn: Callable[..., Any]) -> set[int]:
    """The lines of the busy loop in an endpoint: where a sample of it can land."""
    source, first = inspect.getsourcelines(fn)
    return {first + i for i, line in enumerate(source) if "while " in line or "spins += 1" in line}


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@pytest.fixture(params=LOOPS)
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, ModuleType, BlockingDetector, threading.Event]]:
    """The example app served by uvicorn on 127.0.0.1 in a thread, under a BlockingDetector."""
    example = load_example()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # clients may connect at once; uvicorn accepts when it is up
    port = sock.getsockname()[1]
    config = uvicorn.Config(example.app, log_level="warning", lifespan="off")
    config.load()  # import the protocol modules here, not on the loop under test
    server = uvicorn.Server(config)
    reported = threading.Event()
    holder: dict[str, BlockingDetector] = {}
    detector_ready = threading.Event()

    async def serve() -> None:
        async with BlockingDetector(0.1, on_block=lambda event: reported.set()) as detector:
            holder["detector"] = detector
            detector_ready.set()
            await server.serve(sockets=[sock])

    def run() -> None:
        loop = new_loop(request.param)
        try:
            loop.run_until_complete(serve())
        finally:
            loop.close()

    thread = threading.Thread(target=run, name=f"uvicorn-{request.param}")
    thread.start()
    try:
        assert detector_ready.wait(10)
        yield f"http://127.0.0.1:{port}", example, holder["detector"], reported
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_async_cpu_endpoint_is_reported_and_the_def_endpoint_is_not(
    served: tuple[str, ModuleType, BlockingDetector, threading.Event],
) -> None:
    """The async def CPU endpoint is reported at its loop line; the same work in a def endpoint is not."""
    url, example, detector, reported = served
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/cpu-async", params={"seconds": 0.3}).status_code == 200
        assert reported.wait(10)
        before = len(detector.events)
        assert client.get("/cpu-sync", params={"seconds": 0.3}).status_code == 200
        assert client.get("/health").status_code == 200
    events = list(detector.events)
    reports = "\n\n".join(event.format() for event in events)
    named = [e for e in events if e.site is not None and e.site.name == "cpu_async"]
    assert len(named) == 1, reports
    [event] = named
    assert isinstance(event, BlockingEvent)
    assert event.site is not None
    assert event.site.filename == str(APP_FILE)
    assert event.site.lineno in loop_lines(example.cpu_async)
    assert event.duration >= 0.25, reports  # the endpoint spins for 0.3 s
    assert event.task_name is not None
    assert "at cpu_async (" in event.format()
    # The def endpoint ran its 0.3 s of work in a worker thread: no block of that size, no
    # stack in it (a stall of the whole process on a loaded machine could still show up).
    assert not [e for e in events[before:] if e.duration >= 0.25], reports
    assert not [e for e in events if any(frame.name == "cpu_sync" for frame in e.stack)], reports


@pytest.mark.parametrize("loop", LOOPS)
def test_the_same_app_under_watch_gives_the_summary(tmp_path: Path, loop: str) -> None:
    """python -m asyncbridge watch -- -m uvicorn ... on the unchanged app: SIGINT prints the summary."""
    report = tmp_path / "report.json"
    command = [
        sys.executable, "-m", "asyncbridge", "watch", "--threshold", "0.1", "--report", str(report), "--",
        "-m", "uvicorn", "--app-dir", str(EXAMPLES), "fastapi_blocking:app",
        "--host", "127.0.0.1", "--port", "0", "--loop", loop, "--lifespan", "off",
    ]  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as process:

        def pump() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                lines.put(line)
            lines.put("")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            port = None
            while port is None:
                line = lines.get(timeout=30)
                assert line, "uvicorn exited before it served"
                match = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
                port = int(match[1]) if match else None
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
                assert client.get("/cpu-async", params={"seconds": 0.3}).status_code == 200
                assert client.get("/cpu-sync", params={"seconds": 0.3}).status_code == 200
                assert client.get("/health").status_code == 200
            process.send_signal(signal.SIGINT)
            assert process.wait(30) == 0  # uvicorn shuts down gracefully on Ctrl-C; watch passes its code on
        finally:
            if process.poll() is None:
                process.kill()
        reader.join(10)
    output = "".join(iter(lines.get_nowait, ""))
    summary = output[output.index("asyncbridge watch: the event loop was blocked") :]
    assert re.search(r"(?m)^ +0\.[23]\d\d s +1 +0\.[23]\d\d s  cpu_async  .*fastapi_blocking\.py:\d+$", summary)
    assert "cpu_sync" not in summary
    data = json.loads(report.read_text())
    [site] = [s for s in data["sites"] if s["function"] == "cpu_async"]
    assert site["count"] == 1
    assert site["file"] == str(APP_FILE)
    assert site["line"] in loop_lines(load_example().cpu_async)
    assert not [s for s in data["sites"] if s["function"] == "cpu_sync"]
