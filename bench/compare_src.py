"""Compare asyncbridge revisions on the hot-path counters, alternating runs so drift hits both.

    .venv/bin/python bench/compare_src.py HEAD~1 HEAD                 # every loop
    .venv/bin/python bench/compare_src.py HEAD /tmp/proto/src -b uvloop --rounds 6

Each round runs ``profile_hot_path.py --src REV`` once per revision (in a
fresh interpreter, so each imports its own asyncbridge), in alternating
order; the table shows, per workload, the median over rounds of each
revision's wall time per call and the median of the paired ratios
(later / first). A REV can be any git revision or a directory holding an
``asyncbridge`` package.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revs", nargs="+", help="git revisions or directories; the first is the baseline")
    parser.add_argument("--backend", "-b", action="append", choices=("asyncio", "uvloop", "trio"))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--metric", default="wall", choices=("wall", "loop", "workers", "switches"))
    args = parser.parse_args(argv)

    results: dict[str, list[dict[str, dict[str, float]]]] = {rev: [] for rev in args.revs}
    backends = [x for b in args.backend or [] for x in ("-b", b)]
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = args.revs if r % 2 == 0 else args.revs[::-1]
            for rev in order:
                out = Path(tmp) / "out.json"
                subprocess.run(
                    [
                        sys.executable,
                        str(HERE / "profile_hot_path.py"),
                        "--src",
                        rev,
                        "--runs",
                        "1",
                        "--json",
                        str(out),
                        *backends,
                    ],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                results[rev].append(json.loads(out.read_text()))
                print(f"round {r + 1}/{args.rounds}: {rev} done", file=sys.stderr, flush=True)

    base = args.revs[0]
    keys = list(results[base][0])
    head = ["workload", *[f"{rev} ({args.metric} per call)" for rev in args.revs]]
    head += [f"{rev} / {base}" for rev in args.revs[1:]]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for key in keys:
        cells = [key]
        for rev in args.revs:
            cells.append(f"{statistics.median(run[key][args.metric] for run in results[rev]):.2f}")
        for rev in args.revs[1:]:
            ratios = [
                b[key][args.metric] / a[key][args.metric] for a, b in zip(results[base], results[rev], strict=True)
            ]
            cells.append(f"{statistics.median(ratios):.2f}")
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
