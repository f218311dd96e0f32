"""The ledger's one model."""

from __future__ import annotations

from django.db import models


class Entry(models.Model):
    transfer = models.CharField(max_length=64)
    amount = models.IntegerField()

    class Meta:
        app_label = "ledger"
