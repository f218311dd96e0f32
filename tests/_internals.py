"""The package's private names that tests reach for, imported from one place that follows their moves."""

from __future__ import annotations

from asyncbridge._backends import current_inbox, running_asyncio_loop
from asyncbridge._call import call_route

__all__ = ["call_route", "current_inbox", "running_asyncio_loop"]
