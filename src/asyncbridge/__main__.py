"""Command line: ``python -m asyncbridge demo`` and ``python -m asyncbridge watch``."""

from __future__ import annotations

import sys

USAGE = """usage: python -m asyncbridge COMMAND [ARGS...]

commands:
  demo     show, live, what asyncbridge is for (under 10 seconds)
  watch    run an asyncio, uvloop or trio program unchanged, its Python child processes included,
           and report what blocked its event loops (python -m asyncbridge watch --help):
           python -m asyncbridge watch [--threshold S] [--format text|json] [--report FILE] [--no-children]
                                       -- (SCRIPT | -m MODULE) [ARGS...]
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "demo":
        from ._demo import main as demo

        status: int = demo(rest)
        return status
    if command == "watch":
        from ._watch import main as watch

        status = watch(rest)
        return status
    print(f"asyncbridge: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
