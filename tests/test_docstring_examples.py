"""Every public name has a docstring with a runnable ``Example:``, and every one of those examples runs.

The public names are those of ``__all__`` in ``asyncbridge``, ``asyncbridge.dask``,
``asyncbridge.django`` and ``asyncbridge.pytest_plugin``. Each has an
``Example:`` section (Google style, shown by the API reference as an example box)
holding fenced ```python blocks. The docstrings are read from the source, as the
reference's mkdocstrings does (a constant's docstring is the string after it).

Examples without top-level ``await`` run as they are, with no event loop; those
with one run under asyncio, uvloop and trio, under the blocking detector like
every async test. The pytest plugin's examples are test files, run by pytest
(``pytester``) on the three backends. A block whose first line is
``# compile-only: REASON`` is only compiled; none is, so far.

A public method, one the reference shows (it has a docstring and the page's
``filters`` do not hide it), must be called in an example of its class (the
class's own or a method's). Code the reference shows outside an ``Example:``
section (a fenced block, or an indented block after ``::``) would not be run,
so it is refused.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import asyncbridge
from _snippets import Snippet, compile_snippet, is_async, run_snippet, run_sync_snippet, snippets_in

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_MODULES = ("asyncbridge", "asyncbridge.dask", "asyncbridge.django", "asyncbridge.pytest_plugin")
COMPILE_ONLY = re.compile(r"\A\s*# compile-only: \S")


@dataclass(frozen=True)
class Docstring:
    path: str  # of the source file, relative to the repository root
    line: int  # the line the docstring's text starts on
    text: str  # cleaned (inspect.cleandoc)
    node: ast.AST  # what it documents


def docstrings_in(path: Path, relative: str | None = None) -> dict[str, Docstring]:
    """The docstrings of a module's classes, functions, methods and constants, by qualified name."""
    tree = ast.parse(path.read_text())
    relative = relative or path.relative_to(ROOT).as_posix()
    found: dict[str, Docstring] = {}

    def record(qualname: str, node: ast.AST, expr: ast.stmt) -> None:
        if isinstance(expr, ast.Expr) and isinstance(expr.value, ast.Constant) and isinstance(expr.value.value, str):
            # Overloads come first and have no docstring; the implementation's wins.
            found[qualname] = Docstring(relative, expr.lineno, inspect.cleandoc(expr.value.value), node)

    def walk(body: list[ast.stmt], prefix: str) -> None:
        for i, node in enumerate(body):
            following = body[i + 1] if i + 1 < len(body) else None
            if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.body:
                    record(prefix + node.name, node, node.body[0])
                if isinstance(node, ast.ClassDef):
                    walk(node.body, f"{prefix}{node.name}.")
            elif following is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                if isinstance(node, (ast.Assign, ast.AnnAssign)) and len(targets) == 1:
                    target = targets[0]
                    if isinstance(target, ast.Name):
                        record(prefix + target.id, node, following)

    walk(tree.body, "")
    return found


DOCSTRINGS = {path: docstrings_in(path) for path in sorted((ROOT / "src" / "asyncbridge").rglob("*.py"))}


def public_names() -> list[str]:
    names = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        names.extend(f"{module_name}.{name}" for name in module.__all__)
    return names


PUBLIC_NAMES = public_names()


def docstring_of(public_name: str) -> Docstring | None:
    """The docstring of a public object, found in the source file and under the name that define it."""
    module_name, name = public_name.rsplit(".", 1)
    obj = inspect.unwrap(getattr(importlib.import_module(module_name), name))  # a pytest fixture wraps its function
    if inspect.isfunction(obj):
        return DOCSTRINGS.get(Path(obj.__code__.co_filename), {}).get(obj.__qualname__)
    # A class (whose __module__ is the public one, not where it is defined) or a constant (the string
    # after its assignment): the one definition under that name, in its module or a private one.
    qualname = obj.__qualname__ if inspect.isclass(obj) else name
    kind = ast.ClassDef if inspect.isclass(obj) else (ast.Assign, ast.AnnAssign)
    own = Path(importlib.import_module(module_name).__file__ or "")
    candidates = [own] if qualname in DOCSTRINGS.get(own, {}) else list(DOCSTRINGS)
    found = [DOCSTRINGS[path][qualname] for path in candidates if qualname in DOCSTRINGS[path]]
    found = [docstring for docstring in found if isinstance(docstring.node, kind)]
    assert len(found) <= 1, f"{public_name} is defined in {[d.path for d in found]}: which is it?"
    return found[0] if found else None


def section(docstring: Docstring, title: str) -> tuple[int, str]:
    """The line offset and text of a Google-style section (``Title:`` then indented lines), or (0, "")."""
    lines = docstring.text.splitlines()
    for i, line in enumerate(lines):
        if line == f"{title}:":
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() and not lines[j][0].isspace()), None)
            return i + 1, "\n".join(lines[i + 1 : end])
    return 0, ""


def examples_of(docstring: Docstring) -> list[Snippet]:
    offset, text = section(docstring, "Example")
    return snippets_in(text, docstring.path, first_line=docstring.line + offset)


@dataclass(frozen=True)
class Example:
    owner: str  # the public name whose docstring holds it (a method's: Class.method)
    snippet: Snippet

    @property
    def id(self) -> str:
        return f"{self.owner}@{self.snippet.line}"


def reference_filters() -> dict[str, list[str]]:
    """The members each ``::: name`` directive of docs/reference hides, as its ``filters`` option's patterns."""
    hidden: dict[str, list[str]] = {}
    for page in sorted((ROOT / "docs" / "reference").glob("*.md")):
        current = None
        for line in page.read_text().splitlines():
            if line.startswith("::: "):
                current = line[4:].strip()
                hidden[current] = []
            elif current and (match := re.match(r"\s+filters:\s*(\[.*\])", line)):
                hidden[current] = [pattern[1:] for pattern in ast.literal_eval(match[1]) if pattern.startswith("!")]
            elif line and not line[0].isspace():
                current = None
    return hidden


REFERENCE = reference_filters()
# mkdocs.yml's filters, for the entries without their own.
GLOBAL_FILTERS = [
    pattern[1:]
    for pattern in ast.literal_eval(re.search(r"^ +filters: *(\[.*\])", (ROOT / "mkdocs.yml").read_text(), re.M)[1])
    if pattern.startswith("!")
]


def shown_methods(public_name: str, docstring: Docstring) -> dict[str, Docstring]:
    """The methods of a public class that its reference entry shows (public, documented, not filtered out)."""
    node = docstring.node
    if not isinstance(node, ast.ClassDef):
        return {}
    hidden = REFERENCE.get(public_name) or GLOBAL_FILTERS
    methods = {}
    for member in node.body:
        if not isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) or ast.get_docstring(member) is None:
            continue
        decorators = {ast.unparse(decorator) for decorator in member.decorator_list}
        if "property" in decorators or any(d.endswith(".setter") for d in decorators):
            continue
        if not any(re.search(pattern, member.name) for pattern in hidden):
            methods[member.name] = DOCSTRINGS[ROOT / docstring.path][f"{node.name}.{member.name}"]
    return methods


def collect() -> tuple[list[Example], list[str], list[str]]:
    """Every example of the public docstrings; the public names without one; the methods no example of
    their class (its own or its methods') calls."""
    examples: list[Example] = []
    missing: list[str] = []
    uncalled: list[str] = []
    for public_name in PUBLIC_NAMES:
        docstring = docstring_of(public_name)
        own = examples_of(docstring) if docstring else []
        if not own:
            missing.append(public_name)
        examples.extend(Example(public_name, snippet) for snippet in own)
        if docstring is None:
            continue
        class_examples = list(own)
        methods = shown_methods(public_name, docstring)
        for method, method_doc in methods.items():
            method_examples = examples_of(method_doc)
            examples.extend(Example(f"{public_name}.{method}", snippet) for snippet in method_examples)
            class_examples.extend(method_examples)
        for method in methods:
            # ``async with executor`` is how an example calls ``aclose``.
            called = re.compile(rf"\.{method}\b|async with" if method == "aclose" else rf"\.{method}\b")
            if not any(called.search(snippet.source) for snippet in class_examples):
                uncalled.append(f"{public_name}.{method}")
    return examples, missing, uncalled


EXAMPLES, MISSING, UNCALLED = collect()
PLUGIN = "asyncbridge.pytest_plugin."
COMPILED_ONLY = [e for e in EXAMPLES if COMPILE_ONLY.match(e.snippet.source)]
RUN = [e for e in EXAMPLES if e not in COMPILED_ONLY]
SYNC = [e for e in RUN if not e.owner.startswith(PLUGIN) and not is_async(e.snippet)]
ASYNC = [e for e in RUN if not e.owner.startswith(PLUGIN) and is_async(e.snippet)]
PYTEST = [e for e in RUN if e.owner.startswith(PLUGIN)]


def test_every_public_name_has_an_example() -> None:
    assert len(PUBLIC_NAMES) > 25
    assert not MISSING, f"these public names have no ```python block in an 'Example:' section: {MISSING}"


def test_every_public_method_is_called_in_an_example_of_its_class() -> None:
    assert not UNCALLED, f"no example of their class (its own or a method's) calls these methods: {UNCALLED}"


def test_every_public_name_is_in_the_api_reference() -> None:
    """The reference shows each name's signature and types: it has a ``::: name`` entry (or its module has)."""
    entries = set(REFERENCE)
    absent = [name for name in PUBLIC_NAMES if name not in entries and name.rsplit(".", 1)[0] not in entries]
    assert not absent, f"no '::: name' entry in docs/reference/*.md for {absent}"


CODE_OUTSIDE_EXAMPLES = re.compile(r"(^[ \t]*(```|~~~))|(::[ \t]*$)", re.MULTILINE)


def test_the_reference_shows_no_code_outside_the_examples() -> None:
    """A code block elsewhere in a public docstring would be shown on the site and run by no test."""
    offenders = []
    for public_name in PUBLIC_NAMES:
        docstring = docstring_of(public_name)
        if docstring is None:
            continue
        owners = [(public_name, docstring)]
        owners += [(f"{public_name}.{m}", doc) for m, doc in shown_methods(public_name, docstring).items()]
        for owner, doc in owners:
            offset, example = section(doc, "Example")
            rest = doc.text.replace(example, "") if offset else doc.text
            if CODE_OUTSIDE_EXAMPLES.search(rest):
                offenders.append(owner)
    assert not offenders, f"code outside an 'Example:' section in the docstrings of {offenders}"


def test_few_examples_are_only_compiled() -> None:
    assert len(COMPILED_ONLY) <= 2, [e.id for e in COMPILED_ONLY]
    assert SYNC
    assert ASYNC
    assert PYTEST


@pytest.fixture(autouse=True)
def _example_setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """What the examples take for granted: a configured Django project; and what they must not leave
    behind: the default executors they replace are put back (the replacements shut down)."""
    example = getattr(request.node, "callspec", None) and request.node.callspec.params.get("example")
    if isinstance(example, Example) and example.owner.startswith("asyncbridge.django."):
        import django
        from django.conf import settings

        if not settings.configured:
            # A file: Django never closes a connection to an in-memory sqlite database.
            database = tmp_path_factory.mktemp("django") / "db.sqlite3"
            settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}})
            django.setup()
    threads, processes = asyncbridge.get_default_executor(), asyncbridge.get_default_process_executor()
    yield
    replaced_threads = asyncbridge.set_default_executor(threads)
    if replaced_threads is not threads and replaced_threads is not None:
        replaced_threads.shutdown()
    replaced_processes = asyncbridge.set_default_process_executor(processes)
    if replaced_processes is not processes and replaced_processes is not None:
        replaced_processes.shutdown()


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.id for e in EXAMPLES])
def test_example_compiles(example: Example) -> None:
    compile_snippet(example.snippet)


@pytest.mark.parametrize("example", SYNC, ids=[e.id for e in SYNC])
def test_sync_example_runs(example: Example) -> None:
    run_sync_snippet(example.snippet)


@pytest.mark.anyio
@pytest.mark.parametrize("example", ASYNC, ids=[e.id for e in ASYNC])
async def test_async_example_runs(example: Example) -> None:
    await run_snippet(example.snippet)


PYTEST_CONFTEST = """
import pytest

@pytest.fixture(params=[
    pytest.param(("asyncio", {}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    pytest.param(("trio", {}), id="trio"),
])
def anyio_backend(request):
    return request.param
"""


@pytest.mark.parametrize("example", PYTEST, ids=[e.id for e in PYTEST])
def test_pytest_plugin_example_passes_under_pytest(example: Example, pytester: pytest.Pytester) -> None:
    """The plugin's examples are test files: every test in them passes, on each backend."""
    pytester.makeconftest(PYTEST_CONFTEST)
    pytester.makeini("[pytest]\nfilterwarnings = error\naddopts = -p no:hypothesispytest\n")
    pytester.makepyfile(test_example=example.snippet.source)
    result = pytester.runpytest()
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 3, result.stdout.str()  # a test or more, on three backends
    assert set(outcomes) == {"passed"}, result.stdout.str()


SAMPLE = '''\
"""Module."""

LIMIT = 3
"""How many.

Example:
    ```python
    assert LIMIT == 3
    ```
"""


class Pool:
    """A pool.

    Example:
        Make one:

        ```python
        pool = Pool()
        await pool.run(print)
        ```

    Raises:
        ValueError: never.
    """

    def run(self, fn):
        """Run fn."""
'''


def test_examples_are_found_in_the_example_section_with_their_source_lines(tmp_path: Path) -> None:
    path = tmp_path / "sample.py"
    path.write_text(SAMPLE)
    found = docstrings_in(path, "sample.py")
    limit, pool = examples_of(found["LIMIT"]), examples_of(found["Pool"])
    assert [(s.line, s.source) for s in limit] == [(7, "assert LIMIT == 3\n")]
    assert [(s.line, s.source) for s in pool] == [(19, "pool = Pool()\nawait pool.run(print)\n")]
    assert SAMPLE.splitlines()[19 - 1].strip() == SAMPLE.splitlines()[7 - 1].strip() == "```python"
    assert is_async(pool[0])
    assert not is_async(limit[0])
    assert examples_of(found["Pool.run"]) == []
