"""The example's one app: a ledger of entries written in transactions."""
