"""A small, complete Django project whose async views use asyncbridge: run it with uvicorn (see README.md)."""
