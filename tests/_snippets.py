"""Finding, compiling and running the Python examples of the docs and of the docstrings.

Shared by tests/test_doc_snippets.py (the markdown pages) and
tests/test_docstring_examples.py (the docstrings' ``Example:`` sections): both
are fenced ```python blocks, found by :func:`snippets_in`. Top-level ``await``,
``async with`` and ``async for`` are allowed (``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT``);
a snippet that uses them is async and is awaited on the running event loop.
"""

from __future__ import annotations

import ast
import inspect
import re
import types
from dataclasses import dataclass
from typing import Any

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
MARK = re.compile(r"^[ \t]*<!--\s*(?P<mark>run|skip):\s*next(?:\s+\((?P<reason>.+)\))?\s*-->[ \t]*$")


@dataclass(frozen=True)
class Snippet:
    path: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    source: str
    runnable: bool  # True when marked <!-- run: next -->
    reason: str = ""  # why a block marked <!-- skip: next (reason) --> is not run

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}"


def snippets_in(text: str, path: str, first_line: int = 1) -> list[Snippet]:
    """The fenced python blocks of a markdown text, de-indented (blocks may sit in list items).

    ``first_line`` is the line of ``path`` that the text's first line is on (a docstring's).
    """
    lines = text.splitlines()
    found: list[Snippet] = []
    mark: str | None = None  # the <!-- run|skip: next --> comment that applies to the next block
    reason = ""
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            marked = MARK.match(lines[i])
            if marked:
                mark, reason = marked["mark"], marked["reason"] or ""
            elif lines[i].strip():
                mark = None
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
            skipped = reason if mark == "skip" else ""
            found.append(Snippet(path, first_line + i, "\n".join(body) + "\n", mark == "run", skipped))
        mark = None
        i = j + 1
    return found


def compile_snippet(snippet: Snippet) -> types.CodeType:
    # Lines are offset so that errors and tracebacks name the line in the markdown (or source) file.
    source = "\n" * snippet.line + snippet.source
    return compile(source, snippet.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


def is_async(snippet: Snippet) -> bool:
    """True when the snippet has a top-level ``await``, ``async with`` or ``async for``."""
    return bool(compile_snippet(snippet).co_flags & inspect.CO_COROUTINE)


async def run_snippet(snippet: Snippet) -> dict[str, Any]:
    """Run a snippet in a fresh namespace, awaiting its top-level awaits on the running loop; return the namespace."""
    namespace: dict[str, Any] = {"__name__": "__doc_snippet__"}
    result = eval(compile_snippet(snippet), namespace)  # a coroutine when the code has a top-level await
    if inspect.iscoroutine(result):
        await result
    return namespace


def run_sync_snippet(snippet: Snippet) -> dict[str, Any]:
    """Run a snippet without top-level awaits in a fresh namespace, with no event loop; return the namespace."""
    code = compile_snippet(snippet)
    if code.co_flags & inspect.CO_COROUTINE:
        raise ValueError(f"{snippet.name} has a top-level await: run it with run_snippet, on an event loop")
    namespace: dict[str, Any] = {"__name__": "__doc_snippet__"}
    exec(code, namespace)
    return namespace
