"""Async views whose ORM work runs in asyncbridge threads, one pinned thread per request."""

from __future__ import annotations

import uuid
import weakref
from typing import Any

from django.db import transaction
from django.db.backends.signals import connection_created
from django.http import HttpRequest, JsonResponse

from asyncbridge import async_wrap

from .models import Entry

# Every database connection the server opens, to report how many are still open (/connections).
_opened: weakref.WeakSet[Any] = weakref.WeakSet()
connection_created.connect(lambda sender, connection, **kwargs: _opened.add(connection), weak=False)


@async_wrap
def begin() -> None:
    transaction.set_autocommit(False)  # a transaction on this thread's connection


@async_wrap
def record(transfer: str, amount: int) -> int:
    return Entry.objects.create(transfer=transfer, amount=amount).pk


@async_wrap
def commit() -> None:
    transaction.commit()
    transaction.set_autocommit(True)


@async_wrap
def rollback() -> None:
    transaction.rollback()
    transaction.set_autocommit(True)


@async_wrap
def count(transfer: str | None = None) -> int:
    entries = Entry.objects.all() if transfer is None else Entry.objects.filter(transfer=transfer)
    return entries.count()


# --8<-- [start:transfer]
async def transfer(request: HttpRequest) -> JsonResponse:
    """Two entries in one transaction, over four calls: each may run on any thread but the request's."""
    name = uuid.uuid4().hex
    await begin()
    try:
        debit = await record(name, -10)
        credit = await record(name, +10)
        await commit()
    except BaseException:
        await rollback()
        raise
    return JsonResponse({"transfer": name, "entries": [debit, credit], "kept": await count(name)})


# --8<-- [end:transfer]


async def total(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"entries": await count()})


async def open_connections(request: HttpRequest) -> JsonResponse:
    """How many database connections were opened, and how many are still open (in any thread)."""
    opened = list(_opened)
    return JsonResponse({"opened": len(opened), "open": sum(c.connection is not None for c in opened)})
