"""Draw the benchmark figures of docs/benchmarks.md from a run's results (bench/results/latest.json).

    python bench/plot.py                                   # latest.json -> docs/img/bench-*.svg
    python bench/plot.py bench/results/partial.json --out /tmp/figures

Nothing is measured here: the figures are redrawn from the stored results, so
they always show the same run as the page's tables. ``bench/run.py`` calls
``plot()`` after every whole run. The SVGs are written by
``examples/guides/_svg.py``, the guides' own plain-SVG helper (no plotting
library to install).

- ``bench-summary.svg``: for each headline measurement, how many times better
  asyncbridge does than that measurement's baseline (above 1: better; lower-is-
  better measurements are inverted so that every bar reads the same way).
- ``bench-<name>.svg``: every candidate of one measurement (``DETAILS``), its
  median, asyncbridge in blue, the peers in orange, references in grey.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(ROOT / "examples" / "guides"))

from _svg import bar_chart  # noqa: E402

LATEST = BENCH / "results" / "latest.json"
FIGURES = ROOT / "docs" / "img"
OURS, PEER, REFERENCE = "#3f6fb5", "#e0892b", "#9a9a9a"

# file name -> the title of the table it draws, as the scenarios name their tables
DETAILS = {
    "bench-latency.svg": "Sequential await latency on asyncio",
    "bench-throughput.svg": "10,000 concurrent trivial calls on asyncio",
    "bench-process-warm.svg": "Warm per-call latency",
    "bench-sync-wrap.svg": "From plain sync code (no loop running)",
}


def headline(table: dict[str, Any]) -> tuple[str, float] | None:
    """(title, times better than the baseline) for the table's first asyncbridge row; None without one."""
    if not table["baselines"] or table["title"].startswith("..."):
        return None
    ours = next((r for r in table["rows"] if r["name"].startswith("asyncbridge") and "median" in r), None)
    if ours is None:
        return None
    ratio = ours["ratios"].get(table["baselines"][0])
    if not ratio:
        return None
    return table["title"], (1 / ratio if table["better"] == "lower" else ratio)


def plot(results: Path = LATEST, out: Path = FIGURES) -> list[Path]:
    """Write the figures for `results` into `out`; return their paths."""
    data = json.loads(results.read_text())
    tables = [t for scenario in data["scenarios"] for t in scenario["tables"]]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    summary = [h for t in tables if (h := headline(t))]
    if summary:
        path = out / "bench-summary.svg"
        bar_chart(
            path,
            "asyncbridge against each measurement's baseline (above 1: asyncbridge is better)",
            summary,
            unit="x",
            axis="times better than the baseline (paired median over rounds)",
            reference=1.0,
            reference_label="as good as the baseline",
            colors=[OURS if round(x, 2) >= 1 else PEER for _, x in summary],
        )
        written.append(path)
    for name, title in DETAILS.items():
        table = next((t for t in tables if t["title"] == title), None)
        if table is None:
            continue
        rows = [r for r in table["rows"] if "median" in r]
        direction = "lower is better" if table["better"] == "lower" else "higher is better"
        path = out / name
        bar_chart(
            path,
            f"{title}: {table['unit']}, {direction}",
            [(r["name"], r["median"]) for r in rows],
            unit="",
            axis=f"{table['unit']} (median over rounds)",
            colors=[
                REFERENCE if r["reference"] else OURS if r["name"].startswith("asyncbridge") else PEER for r in rows
            ],
            digits=0 if max(r["median"] for r in rows) >= 100 else 1,
        )
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/plot.py", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="?", type=Path, default=LATEST, help="a run's JSON (default: latest.json)")
    parser.add_argument("--out", type=Path, default=FIGURES, help="where to write the SVGs (default: docs/img)")
    args = parser.parse_args(argv)
    for path in plot(args.results, args.out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
