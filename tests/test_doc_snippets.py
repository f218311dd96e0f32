"""The Python examples in README.md and docs/: every fenced ```python block compiles.

Top-level ``await``, ``async with`` and ``async for`` are allowed, as in the
examples (``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT``). A block preceded by the
comment ``<!-- skip: next -->`` (Sybil's spelling) is marked as not runnable:
it is still compiled, never run. Fragments that use names they do not define
(``legacy_db``, ``serve()``) compile fine; a syntax error does not.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
SKIP_MARK = re.compile(r"^[ \t]*<!--\s*skip:\s*next\s*-->[ \t]*$")


@dataclass(frozen=True)
class Snippet:
    path: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    source: str
    runnable: bool  # False when marked <!-- skip: next -->

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}"


def snippets_in(text: str, path: str) -> list[Snippet]:
    """The fenced python blocks of a markdown text, de-indented (blocks may sit in list items)."""
    lines = text.splitlines()
    found: list[Snippet] = []
    skip_next = False
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            if SKIP_MARK.match(lines[i]):
                skip_next = True
            elif lines[i].strip():
                skip_next = False
            i += 1
            continue
        indent, fence = opening["indent"], opening["fence"]
        language = opening["info"].split()[0].lstrip(".").lower() if opening["info"].split() else ""
        body: list[str] = []
        j = i + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        while j < len(lines) and not closing.match(lines[j]):
            body.append(lines[j].removeprefix(indent))
            j += 1
        if language in {"python", "py", "python3"}:
            found.append(Snippet(path, i + 1, "\n".join(body) + "\n", runnable=not skip_next))
        skip_next = False
        i = j + 1
    return found


def compile_snippet(snippet: Snippet) -> None:
    # Lines are offset so that a SyntaxError names the line in the markdown file.
    source = "\n" * snippet.line + snippet.source
    compile(source, snippet.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


def all_snippets() -> list[Snippet]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [snippet for file in files for snippet in snippets_in(file.read_text(), file.relative_to(ROOT).as_posix())]


SNIPPETS = all_snippets()


def test_the_docs_have_python_examples() -> None:
    assert any(snippet.path == "README.md" for snippet in SNIPPETS)
    assert len({snippet.path for snippet in SNIPPETS}) >= 5


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[snippet.name for snippet in SNIPPETS])
def test_snippet_compiles(snippet: Snippet) -> None:
    compile_snippet(snippet)


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
        (3, "x = 1\n", True),
        (9, "async with lock:\n    await go()\n", True),
        (16, 'print("not run")\n', False),
    ]


def test_compile_snippet_allows_top_level_await_and_reports_the_markdown_line() -> None:
    compile_snippet(Snippet("example.md", 9, "async with lock:\n    await go()\n", runnable=True))
    with pytest.raises(SyntaxError) as caught:
        compile_snippet(Snippet("example.md", 20, "x = 1\ndef broken(:\n", runnable=True))
    assert (caught.value.filename, caught.value.lineno) == ("example.md", 22)
