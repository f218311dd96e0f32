"""The ASGI application: ``uvicorn --app-dir examples django_site.asgi:application``.

It creates the ledger's table on start (the example has no migrations) and
closes the connection it used for that, so every connection the server holds
afterwards was opened by a request.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_site.settings")

import django
from django.core.asgi import get_asgi_application

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connections  # noqa: E402

call_command("migrate", run_syncdb=True, verbosity=0)
connections.close_all()

application = get_asgi_application()
