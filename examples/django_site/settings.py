"""Settings of the example Django project: one app, sqlite, asyncbridge's pinned-thread middleware."""

from __future__ import annotations

import os
from pathlib import Path

SECRET_KEY = "example-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["django_site.ledger"]
# --8<-- [start:middleware]
MIDDLEWARE = [
    # Every request gets its own pinned thread for its ORM work, and the database
    # connections that thread opened are closed when the request ends.
    "asyncbridge.django.PinnedThreadMiddleware",
]
# --8<-- [end:middleware]
ROOT_URLCONF = "django_site.urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("LEDGER_DB", str(Path(__file__).with_name("ledger.sqlite3"))),
        # IMMEDIATE: a transaction takes the write lock when it begins, so concurrent ones
        # queue up (for `timeout` seconds) instead of failing when they first write.
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30},
    }
}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
