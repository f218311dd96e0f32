"""The package's private names that tests reach for, imported from one place that follows their moves."""

from __future__ import annotations

# One import per try: ruff sorts a module that does not exist yet into another section.
try:
    from asyncbridge._backends import current_inbox, running_asyncio_loop
except ImportError:  # before the redesign
    from asyncbridge._hub import _get_running_loop as running_asyncio_loop
    from asyncbridge._hub import current_inbox
try:
    from asyncbridge._call import nested_wait
except ImportError:  # before the redesign
    from asyncbridge._hub import nested_wait

__all__ = ["current_inbox", "nested_wait", "running_asyncio_loop"]
