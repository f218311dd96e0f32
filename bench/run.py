"""Run asyncbridge's benchmarks against its peers; print Markdown tables and write results.

    python3 dev.py bench                          # everything (about 9 minutes on 2 cores)
    python3 dev.py bench --scenario latency       # one scenario (repeat the flag for more)
    python3 dev.py bench --backend trio           # only that event loop where it applies
    python3 dev.py bench --quick                  # fewer rounds and calls: a smoke test
    python3 dev.py bench --list                   # the scenarios

A full run writes bench/results/latest.md and latest.json; a partial run (a
scenario, backend or rounds chosen, or --quick) writes bench/results/partial.md
and partial.json instead, so the committed results always come from one whole
run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from types import ModuleType

sys.path.insert(0, str(Path(__file__).resolve().parent))

import plot
import scenario_dask
import scenario_detector
import scenario_latency
import scenario_memory
import scenario_process
import scenario_process_map
import scenario_sync_wrap
import scenario_throughput
from _harness import (
    BACKENDS,
    RESULTS_DIR,
    Config,
    CpuWatch,
    Progress,
    Section,
    machine_info,
    render_report,
    report_json,
    summary_table,
    use_asyncbridge_from,
    wait_for_quiet,
)

SCENARIOS: dict[str, ModuleType] = {
    m.NAME: m
    for m in (
        scenario_latency,
        scenario_throughput,
        scenario_process,
        scenario_detector,
        scenario_sync_wrap,
        scenario_memory,
        scenario_process_map,
        scenario_dask,
    )
}


DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def docs_block(sections: list[Section], command: str, report: str) -> str:
    """What a whole run writes into docs/benchmarks.md: the command, the machine, the targets, the headline table."""
    machine = report.split("\n\n", 3)[2]  # the "Machine: ..." paragraph
    targets = report.split("## Targets (issue 6)", 1)[1].split("\n## ", 1)[0].strip()
    return (
        f"## Latest results\n\nProduced by `{command}`. {machine}\n\n"
        + "### The issue's targets\n\n"
        + targets
        + "\n\n### Headline figures\n\n"
        + "Ratios are to the baseline (the peer named in the baseline column).\n\n"
        + summary_table(sections)
    )


def write_docs(sections: list[Section], command: str, report: str, docs: Path = DOCS) -> None:
    """Rewrite the generated block of docs/benchmarks.md from a whole run; leave the rest of the page alone.

    The block is what lies between the ``<!-- bench:begin -->`` and
    ``<!-- bench:end -->`` lines; everything around it (the introduction, the
    figures, the explanations of the misses) is written by hand and kept.
    """
    text = docs.read_text()
    head, begin, rest = text.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"{docs} has no {BEGIN} ... {END} block to rewrite; add the two lines where the results go")
    docs.write_text(f"{head}{BEGIN}\n\n{docs_block(sections, command, report).strip()}\n\n{END}{tail}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenario",
        "-s",
        action="append",
        choices=sorted(SCENARIOS),
        help="run only this scenario (repeatable)",
    )
    parser.add_argument("--backend", "-b", action="append", choices=BACKENDS, help="only this event loop (repeatable)")
    parser.add_argument("--rounds", type=int, help="rounds per measurement instead of each default")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and smaller sizes")
    parser.add_argument("--output", type=Path, help="write NAME.md and NAME.json here instead")
    parser.add_argument(
        "--src",
        metavar="REV",
        help="measure asyncbridge as of this git revision (e.g. HEAD), not the working tree's src/",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-round progress on stderr")
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each scenario, wait up to this long for other processes to go quiet",
    )
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    args = parser.parse_args(argv)

    if args.list:
        for name, module in SCENARIOS.items():
            print(f"{name:12} {module.TITLE}")
        return 0
    if args.src:
        use_asyncbridge_from(args.src)
    partial = bool(args.scenario or args.backend or args.rounds or args.quick)
    cfg = Config(
        progress=Progress(not args.quiet),
        quick=args.quick,
        rounds=args.rounds,
        backends=tuple(b for b in BACKENDS if not args.backend or b in args.backend),
    )
    names = args.scenario or list(SCENARIOS)
    command = "python3 dev.py bench" + ("" if not argv else " " + " ".join(argv))
    info = machine_info()
    watch = CpuWatch()
    print(f"# bench: {', '.join(names)} on {', '.join(cfg.backends)}", file=sys.stderr, flush=True)

    sections: list[Section] = []
    started = time.perf_counter()
    for name in names:
        cfg.progress(f"== {SCENARIOS[name].TITLE}")
        if args.wait_idle > 0:
            wait_for_quiet(args.wait_idle, cfg.progress)
        t0 = time.perf_counter()
        scenario_watch = CpuWatch()
        section: Section = SCENARIOS[name].run(cfg)
        section.seconds = time.perf_counter() - t0
        section.others = scenario_watch.shares()["others"]
        sections.append(section)
        print(section.to_markdown(), flush=True)
    total = time.perf_counter() - started
    info["cpu_used_elsewhere"] = watch.shares()

    report = render_report(sections, info, command, total)
    out = args.output or RESULTS_DIR / ("partial" if partial else "latest")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(report)
    data = report_json(sections, info, command) | {"total_seconds": total}
    out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    if not partial and args.output is None:
        write_docs(sections, command, report)
        for figure in plot.plot(out.with_suffix(".json")):
            print(f"wrote {figure.relative_to(DOCS.parent.parent)}", file=sys.stderr)
    targets = report.split("## Targets (issue 6)", 1)
    if len(targets) == 2:
        print("## Targets (issue 6)" + targets[1].split("\n## ", 1)[0])
    print(f"wrote {out.with_suffix('.md')} and .json ({total:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
