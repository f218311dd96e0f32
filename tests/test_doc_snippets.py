"""The Python examples in README.md and docs/: every fenced ```python block compiles, the runnable ones run.

Top-level ``await``, ``async with`` and ``async for`` are allowed, as in the
examples (``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT``). Fragments that use names they do
not define (``legacy_db``, ``serve()``) compile fine; a syntax error does not.

Most examples are such fragments, so running is opt-in: a block preceded by
the comment ``<!-- run: next -->`` is run, top-level awaits included, under
asyncio, uvloop and trio, each time in a fresh namespace, under the blocking
detector like every async test. A block preceded by ``<!-- skip: next -->``
(Sybil's spelling) is marked as not runnable and is only compiled; on the guide
pages it must say why: ``<!-- skip: next (why) -->``. The comments are
invisible on GitHub and on the docs site.

The one hand-written table of the API reference, the pytest plugin's options,
is checked against what the plugin registers.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from _snippets import Snippet, compile_snippet, run_snippet, snippets_in

ROOT = Path(__file__).resolve().parent.parent


def all_snippets() -> list[Snippet]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [snippet for file in files for snippet in snippets_in(file.read_text(), file.relative_to(ROOT).as_posix())]


SNIPPETS = all_snippets()


def test_the_docs_have_python_examples() -> None:
    assert any(snippet.path == "README.md" for snippet in SNIPPETS)
    assert len({snippet.path for snippet in SNIPPETS}) >= 5


RUNNABLE = [snippet for snippet in SNIPPETS if snippet.runnable]


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[snippet.name for snippet in SNIPPETS])
def test_snippet_compiles(snippet: Snippet) -> None:
    compile_snippet(snippet)


def test_some_snippets_are_run() -> None:
    assert RUNNABLE, "no block is marked <!-- run: next -->; test_runnable_snippet would run nothing"


@pytest.mark.anyio
@pytest.mark.parametrize("snippet", RUNNABLE, ids=[snippet.name for snippet in RUNNABLE])
async def test_runnable_snippet(snippet: Snippet) -> None:
    await run_snippet(snippet)


EXAMPLE = """\
# Title

```python
x = 1
```

- a list item:

    ```python
    async with lock:
        await go()
    ```

<!-- skip: next -->

~~~~ python title="app.py"
print("not run")
~~~~

<!-- run: next -->
```py
y = 2
```

<!-- run: next -->
A paragraph in between cancels the mark.

```python
z = 3
```

```console
$ not python
```

```
plain
```
"""


def test_snippets_in_finds_fences_indented_tilde_and_marked_blocks() -> None:
    snippets = snippets_in(EXAMPLE, "example.md")
    assert [(s.line, s.source, s.runnable) for s in snippets] == [
        (3, "x = 1\n", False),
        (9, "async with lock:\n    await go()\n", False),
        (16, 'print("not run")\n', False),
        (21, "y = 2\n", True),
        (28, "z = 3\n", False),
    ]


def test_compile_snippet_allows_top_level_await_and_reports_the_markdown_line() -> None:
    compile_snippet(Snippet("example.md", 9, "async with lock:\n    await go()\n", runnable=True))
    with pytest.raises(SyntaxError) as caught:
        compile_snippet(Snippet("example.md", 20, "x = 1\ndef broken(:\n", runnable=True))
    assert (caught.value.filename, caught.value.lineno) == ("example.md", 22)


@pytest.mark.anyio
async def test_run_snippet_awaits_top_level_awaits_and_raises_what_the_snippet_raises() -> None:
    source = "import anyio\nawait anyio.sleep(0)\nvalue = await anyio.to_thread.run_sync(lambda: 42)\n"
    namespace = await run_snippet(Snippet("example.md", 1, source, runnable=True))
    assert namespace["value"] == 42
    with pytest.raises(AssertionError) as caught:
        await run_snippet(Snippet("example.md", 40, "import anyio\nawait anyio.sleep(0)\nassert 1 == 2\n", True))
    frame = caught.traceback[-1]
    assert (Path(frame.path).name, frame.lineno + 1) == ("example.md", 43)  # pytest counts lines from 0


def test_the_reference_lists_every_pytest_option_of_the_plugin(pytester: pytest.Pytester) -> None:
    page = (ROOT / "docs" / "reference" / "detector.md").read_text()
    help_lines = pytester.runpytest("--help").stdout.lines
    start = next(i for i, line in enumerate(help_lines) if line.startswith("asyncbridge:"))
    end = next(i for i in range(start, len(help_lines)) if not help_lines[i].strip())
    options = [m[1] for line in help_lines[start:end] if (m := re.match(r"  (--[\w-]+)", line))]
    ini_names = [m[1] for line in help_lines if (m := re.match(r"  (blocking_\w+) \(", line))]
    markers = [
        m[1]
        for line in pytester.runpytest("--markers").stdout.lines
        if (m := re.match(r"@pytest\.mark\.(blocking\w*)", line))
    ]
    assert options, help_lines
    assert ini_names, help_lines
    assert markers
    missing = [
        name for name in [*options, *ini_names, *markers] if f"`{name}" not in page and f"mark.{name}(" not in page
    ]
    assert not missing, f"docs/reference/detector.md does not describe {missing}"


# The pages whose every Python block runs, is an included program that tests/ runs (``--8<--``), or is
# marked <!-- skip: next (why) --> with its reason.
CHECKED_PAGES = [
    "README.md",
    "docs/choosing.md",
    "docs/dask.md",
    "docs/django.md",
    "docs/fastapi.md",
    "docs/index.md",
    "docs/migrating.md",
    "docs/processes.md",
    "docs/sync_wrap.md",
    "docs/threads.md",
    "docs/trio.md",
]


def test_every_python_block_of_the_guides_runs_or_says_why_not() -> None:
    assert all((ROOT / page).is_file() for page in CHECKED_PAGES)
    silent = [
        snippet.name
        for snippet in SNIPPETS
        if snippet.path in CHECKED_PAGES
        and not snippet.runnable
        and not snippet.reason
        and not snippet.source.lstrip().startswith("--8<--")
    ]
    assert not silent, f"mark these <!-- run: next --> or <!-- skip: next (why not) -->: {silent}"


def test_snippets_in_reads_why_a_block_is_skipped() -> None:
    text = (
        "<!-- skip: next (needs a Dask cluster (a real one)) -->\n```python\na = 1\n```\n\n"
        "<!-- skip: next -->\n```python\nb = 2\n```\n\n"
        "<!-- run: next -->\n```python\nc = 3\n```\n"
    )
    assert [(s.runnable, s.reason) for s in snippets_in(text, "example.md")] == [
        (False, "needs a Dask cluster (a real one)"),
        (False, ""),
        (True, ""),
    ]
