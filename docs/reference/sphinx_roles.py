"""A griffe extension for the API reference: the docstrings' Sphinx markup, read as Markdown.

The docstrings are written for ``help()`` and IDEs in reStructuredText habits:
``:class:`~asyncbridge.BlockingDetector``` roles and ``::`` before a literal
block. mkdocstrings reads them as Markdown, where those show up verbatim. This
turns a role into a code span, linked to its reference entry when it names a
public name (one in ``asyncbridge.__all__``, all of which have an entry), and
``text::`` into ``text:`` (the indented block after it is already code in
Markdown). The docstrings themselves are left as they are.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|exc|data|mod|obj):`(?P<tilde>~?)(?P<target>[^`]+)`")


def public_names() -> set[str]:
    import asyncbridge

    return set(asyncbridge.__all__)


PUBLIC = public_names()


def role_to_markdown(match: re.Match[str]) -> str:
    target = match["target"].lstrip(".")
    shown = target.rsplit(".", 1)[-1] if match["tilde"] else match["target"]
    name = target.removeprefix("asyncbridge.")
    if name in PUBLIC:
        return f"[`{shown}`][asyncbridge.{name}]"
    return f"`{shown}`"


def convert(text: str) -> str:
    text = ROLE.sub(role_to_markdown, text)
    text = re.sub(r"^[ \t]*::[ \t]*$", "", text, flags=re.MULTILINE)
    return re.sub(r"(\S)::[ \t]*$", r"\1:", text, flags=re.MULTILINE)


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, node: Any, obj: griffe.Object, agent: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
