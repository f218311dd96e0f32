"""docs/fastapi.md, "From nothing to a running app", followed step by step from an empty folder.

The files are the ones the page embeds (``--8<--``), saved under the names the
page gives them (``title="app.py"``); the server is the page's ``uvicorn``
command, run in that folder on a free port of 127.0.0.1 (``--fd`` instead of
``--host``/``--port``); the request is the page's ``curl``, sent with an HTTP
client. asyncbridge is importable as an installed package is (on the path, not
from the folder); FastAPI and uvicorn come from the test environment.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from _serve import uvicorn_process

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "fastapi.md"
SECTION = "## From nothing to a running app: CPU work in worker processes"


@dataclass(frozen=True)
class Steps:
    files: dict[str, Path]  # the name the reader saves it as -> the embedded file in the repository
    command: list[str]  # the uvicorn command, as typed
    request: str  # the curl URL
    answer: dict[str, Any]  # the output the page shows for it


def guide_steps() -> Steps:
    """The section's files, command, request and shown answer, read from the markdown."""
    text = GUIDE.read_text()
    assert SECTION in text, f"docs/fastapi.md has no section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    files = {
        name: ROOT / path
        for name, path in re.findall(
            r'^[ \t]*```python title="([\w.]+)"\n[ \t]*--8<-- "([\w./]+)"\n[ \t]*```$', section, re.M
        )
    }
    commands = re.findall(r"^[ \t]*\$ (uvicorn .+)$", section, re.M)
    curls = re.findall(r"^[ \t]*\$ curl '([^']+)'\n[ \t]*(\{.*\})$", section, re.M)
    assert len(commands) == 1, commands
    assert len(curls) == 1, curls
    [(url, shown)] = curls
    return Steps(files, shlex.split(commands[0]), url, json.loads(shown))


def test_the_guide_embeds_whole_files_that_exist() -> None:
    """Each file the reader saves is a whole program from examples/, not a fragment."""
    steps = guide_steps()
    assert set(steps.files) == {"app.py", "cpu.py"}, steps.files
    assert {path.parent for path in steps.files.values()} == {ROOT / "examples" / "fastapi_processes"}
    for path in steps.files.values():
        assert path.is_file(), path
        assert path.read_text().startswith('"""'), f"{path} is not a whole module"
    assert steps.command[:2] == ["uvicorn", "app:app"], steps.command


def server_arguments(command: list[str], loop: str) -> tuple[str, tuple[str, ...]]:
    """The app and options of the page's uvicorn command, without --host/--port (the test binds the socket)."""
    assert command[0] == "uvicorn"
    app, options = command[1], command[2:]
    kept: list[str] = []
    i = 0
    while i < len(options):
        if options[i] in {"--host", "--port"}:
            value = options[i + 1]
            assert options[i] != "--host" or value == "127.0.0.1", "the guide should serve on 127.0.0.1"
            i += 2
            continue
        kept.append(options[i])
        i += 1
    return app, (*kept, "--loop", loop)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_the_guide_from_an_empty_folder_to_an_answer_from_a_worker_process(tmp_path: Path, loop: str) -> None:
    """Save the files, run the command, send the request: the count is right and came from another process."""
    steps = guide_steps()
    folder = tmp_path / "myapp"
    folder.mkdir()
    assert not any(folder.iterdir())
    for name, source in steps.files.items():
        shutil.copyfile(source, folder / name)
    app, args = server_arguments(steps.command, loop)
    installed = {"PYTHONPATH": str(ROOT / "src")}  # asyncbridge as a reader's pip install gives it: importable
    request = urlsplit(steps.request)
    assert request.hostname == "127.0.0.1"
    with (
        uvicorn_process(app, env=installed, args=args, cwd=folder) as (url, server),
        httpx.Client(base_url=url, timeout=60, verify=False) as client,
    ):
        response = client.get(f"{request.path}?{request.query}")
        assert response.status_code == 200, response.text
        answer = response.json()
        assert set(answer) == set(steps.answer), answer
        assert answer["below"] == steps.answer["below"] == 100_000
        assert answer["primes"] == steps.answer["primes"] == 9592  # the primes below 100,000
        assert answer["server_pid"] == server.pid  # the uvicorn process the test started
        assert answer["worker_pid"] != server.pid
        worker = psutil.Process(answer["worker_pid"])  # warm, so still running
        assert worker.ppid() == server.pid, "the work ran in a worker process of the server"
        again = client.get("/primes", params={"below": 20_000}).json()
        assert again["primes"] == 2262
        assert again["worker_pid"] in {child.pid for child in psutil.Process(server.pid).children()}
    assert server.returncode is not None
    _gone, alive = psutil.wait_procs([worker], timeout=15)
    assert not alive, "the lifespan's aclose() stops the workers when the server stops"
