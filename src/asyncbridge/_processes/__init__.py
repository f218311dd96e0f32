"""ProcessExecutor and to_process: parallel CPU work that survives crashes, timeouts and cancellation.

Where each part lives (each module imports only from those below it):

- :mod:`.executor`: the public API (``ProcessExecutor``, ``to_process``, the
  default executor), shutdown at interpreter exit, and ``os.fork()``.
- :mod:`.manager`: the manager thread that starts, feeds and reaps workers.
- :mod:`.pool`: the pool's state and what callers do to it under its lock;
  its docstring holds the design.
- :mod:`.records`: the parent's records of each worker process and each call.
- :mod:`.launch`: starting a worker process, by either launcher.
- :mod:`.pickling`: calls pickled in the caller's thread, replies unpickled.
- :mod:`.worker`: the worker process's main loop (loaded without asyncbridge).
- :mod:`.framing`: the wire format both sides share.
"""

from .executor import ProcessExecutor, get_default_process_executor, set_default_process_executor, to_process

__all__ = ["ProcessExecutor", "get_default_process_executor", "set_default_process_executor", "to_process"]
