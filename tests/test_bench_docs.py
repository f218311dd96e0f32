"""bench/: what a whole run writes into docs/benchmarks.md, the figures drawn from its results, the scenario list.

The benchmarks themselves take minutes and are not run here; these tests feed
the report code small, made-up results and check what it writes.
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def bench() -> Iterator[dict[str, ModuleType]]:
    """bench/'s modules, imported as bench/run.py imports them (bench/ on sys.path)."""
    sys.path.insert(0, str(BENCH))
    try:
        import _harness
        import plot
        import run
        import scenario_dask
        import scenario_process_map

        yield {
            "harness": _harness,
            "plot": plot,
            "run": run,
            "dask": scenario_dask,
            "process_map": scenario_process_map,
        }
    finally:
        sys.path.remove(str(BENCH))


def a_section(harness: ModuleType, median: float) -> Any:
    """One scenario's worth of results: asyncbridge and a baseline over 3 rounds, and a target."""
    rows = [
        harness.Row("asyncbridge async_wrap", [{"us": median, "round": r} for r in range(3)]),
        harness.Row("asyncio.to_thread", [{"us": 2 * median, "round": r} for r in range(3)]),
    ]
    table = harness.Table("Sequential await latency on asyncio", rows, "us", "µs", "lower", ("asyncio.to_thread",))
    check = harness.Check("latency ≤ 0.85 x asyncio.to_thread", "0.50x", True)
    return harness.Section("latency", "1. Latency", tables=[table], checks=[check])


INFO = {
    "cpu_count": 2,
    "processor": "test CPU",
    "platform": "Linux",
    "python": "3.11",
    "git_commit": "abc1234",
    "date": "today",
    "packages": {"asyncbridge": "0"},
}

PAGE = """\
# Benchmarks

An introduction written by hand.

## What limits the targets that a run misses

Explanations written by hand.

<!-- bench:begin -->

## Latest results

Produced by `an old run`.

<!-- bench:end -->

## A hand-kept section after the results

Its table stays.
"""


def test_write_docs_rewrites_the_generated_block_and_keeps_every_hand_written_section(
    bench: dict[str, ModuleType], tmp_path: Path
) -> None:
    """Only what lies between the bench markers changes; a second run with the same results changes nothing."""
    run, harness = bench["run"], bench["harness"]
    page = tmp_path / "benchmarks.md"
    page.write_text(PAGE)
    sections = [a_section(harness, 40.0)]
    report = harness.render_report(sections, INFO, "python3 dev.py bench", 100.0)
    run.write_docs(sections, "python3 dev.py bench", report, docs=page)

    text = page.read_text()
    head, tail = PAGE.split("<!-- bench:begin -->")[0], PAGE.split("<!-- bench:end -->")[1]
    assert text.startswith(head)
    assert text.endswith(tail)
    block = text[len(head) : len(text) - len(tail)]
    assert "an old run" not in block
    assert "Produced by `python3 dev.py bench`. Machine: 2 CPUs (test CPU)" in block
    assert "| latency ≤ 0.85 x asyncio.to_thread | 0.50x | yes |" in block
    assert "asyncbridge async_wrap: 40.0 (0.50x)" in block
    run.write_docs(sections, "python3 dev.py bench", report, docs=page)
    assert page.read_text() == text


def test_write_docs_refuses_a_page_without_the_markers_and_leaves_it_alone(
    bench: dict[str, ModuleType], tmp_path: Path
) -> None:
    """Without the markers, write_docs raises a ValueError that says what to add, and does not touch the page."""
    run, harness = bench["run"], bench["harness"]
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nAll written by hand.\n")
    sections = [a_section(harness, 40.0)]
    report = harness.render_report(sections, INFO, "cmd", 1.0)
    with pytest.raises(ValueError, match="<!-- bench:begin -->"):
        run.write_docs(sections, "cmd", report, docs=page)
    assert page.read_text() == "# Benchmarks\n\nAll written by hand.\n"


def test_the_benchmarks_page_keeps_its_hand_written_sections_outside_the_generated_block() -> None:
    """docs/benchmarks.md has one generated block, and the explanations, figures and map results lie outside it."""
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    assert text.count("<!-- bench:begin -->") == 1
    assert text.count("<!-- bench:end -->") == 1
    before, rest = text.split("<!-- bench:begin -->")
    block, after = rest.split("<!-- bench:end -->")
    assert "## Latest results" in block
    assert "## What limits the targets that a run misses" in before
    assert "## The figures" in before
    assert "## `ProcessExecutor.map` against `ProcessPoolExecutor.map`" in after
    for figure in ("bench-summary", "bench-latency", "bench-throughput", "bench-process-warm", "bench-sync-wrap"):
        assert f"(img/{figure}.svg)" in before
        assert (ROOT / "docs" / "img" / f"{figure}.svg").is_file(), figure


def results_fixture() -> dict[str, Any]:
    """A results file as bench/run.py writes it, cut down to three tables."""

    def row(name: str, median: float, ratio: float | None = None, reference: bool = False) -> dict[str, Any]:
        entry: dict[str, Any] = {"name": name, "reference": reference, "note": "", "median": median}
        entry["ratios"] = {} if ratio is None else {"baseline": ratio}
        return entry

    return {
        "scenarios": [
            {
                "name": "latency",
                "tables": [
                    {
                        "title": "Sequential await latency on asyncio",
                        "unit": "µs per await",
                        "better": "lower",
                        "baselines": ["baseline"],
                        "rows": [
                            row("asyncbridge async_wrap", 80.0, 0.8),
                            row("baseline", 100.0, 1.0),
                            row("minimal hand-off", 60.0, 0.6, reference=True),
                        ],
                    },
                    {
                        "title": "... a sub-measurement left out of the summary",
                        "unit": "%",
                        "better": "higher",
                        "baselines": ["baseline"],
                        "rows": [row("asyncbridge async_wrap", 90.0, 1.5), row("baseline", 60.0, 1.0)],
                    },
                ],
            },
            {
                "name": "throughput",
                "tables": [
                    {
                        "title": "10,000 concurrent trivial calls on asyncio",
                        "unit": "calls/s",
                        "better": "higher",
                        "baselines": ["baseline"],
                        "rows": [row("asyncbridge async_wrap", 50_000.0, 5.0), row("baseline", 10_000.0, 1.0)],
                    }
                ],
            },
        ]
    }


def bars(path: Path) -> list[tuple[str, str]]:
    """The (label, fill) of every bar in an SVG bar chart, parsed as XML (so a malformed file fails)."""
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    return [
        (rect.findtext(f"{SVG}title") or "", rect.attrib["fill"])
        for rect in root.iter(f"{SVG}rect")
        if rect.find(f"{SVG}title") is not None
    ]


def test_plot_draws_the_summary_and_the_detail_charts_from_a_results_file(
    bench: dict[str, ModuleType], tmp_path: Path
) -> None:
    """The summary shows asyncbridge's 'times better' per headline table; details show every candidate's median."""
    plot = bench["plot"]
    results = tmp_path / "results.json"
    results.write_text(json.dumps(results_fixture()))
    written = plot.plot(results, tmp_path / "img")
    assert sorted(p.name for p in written) == ["bench-latency.svg", "bench-summary.svg", "bench-throughput.svg"]

    # a lower-is-better ratio of 0.8 reads as 1.25 times better; the "..." sub-measurement is left out
    assert bars(tmp_path / "img" / "bench-summary.svg") == [
        ("Sequential await latency on asyncio: 1.25x", plot.OURS),
        ("10,000 concurrent trivial calls on asyncio: 5.00x", plot.OURS),
    ]
    assert bars(tmp_path / "img" / "bench-latency.svg") == [
        ("asyncbridge async_wrap: 80", plot.OURS),
        ("baseline: 100", plot.PEER),
        ("minimal hand-off: 60", plot.REFERENCE),  # 0 digits: medians reach 100
    ]


def test_run_lists_the_process_map_and_dask_scenarios(
    bench: dict[str, ModuleType], capsys: pytest.CaptureFixture[str]
) -> None:
    """bench/run.py --list shows process_map and dask, so --scenario accepts them."""
    assert bench["run"].main(["--list"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names[-2:] == ["process_map", "dask"]
    assert set(names) == set(bench["run"].SCENARIOS)


def test_process_map_scenario_measures_both_pools_as_harness_tables(bench: dict[str, ModuleType]) -> None:
    """One tiny round: a table per chunksize, asyncbridge's row paired with the stdlib's in the same round."""
    harness, scenario = bench["harness"], bench["process_map"]
    cfg = harness.Config(progress=harness.Progress(False), rounds=1)
    section = scenario.run(cfg, items=200)
    assert [t.title for t in section.tables] == [
        "map() of 200 trivial calls, chunksize 1",
        "map() of 200 trivial calls, chunksize 100",
    ]
    for table, chunksize in zip(section.tables, (1, 100), strict=True):
        baseline = f"ProcessPoolExecutor(2).map, chunksize {chunksize}"
        assert [row.name for row in table.rows] == [
            baseline,
            f"asyncbridge ProcessExecutor(2).map, chunksize {chunksize}",
        ]
        assert table.ratio(table.rows[1].name, baseline) is not None
        assert all(row.unavailable is None for row in table.rows), [row.unavailable for row in table.rows]


def test_dask_scenario_turns_its_rounds_into_harness_rows_paired_by_round(bench: dict[str, ModuleType]) -> None:
    """Each executor's per-metric lists become one sample per round, so ratios pair samples of the same round."""
    dask = bench["dask"]
    samples = {
        key: {"overhead_ms": [a, b], "round": [0, 1]}
        for key, (a, b) in {"process": (1.0, 2.0), "dask": (10.0, 40.0), "raw": (5.0, 5.0)}.items()
    }
    rows = dask.rows_of(samples)
    assert [(row.name, row.reference) for row in rows] == [(dask.DASK, False), (dask.PROCESS, False), (dask.RAW, True)]
    harness = bench["harness"]
    table = harness.Table("t", rows, "overhead_ms", "ms", "lower", (dask.PROCESS,))
    assert table.ratio(dask.DASK, dask.PROCESS) == 15.0  # median of 10/1 and 40/2
