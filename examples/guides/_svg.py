"""Two kinds of figure written as plain SVG text: horizontal bar charts and timelines.

The guides' scripts (``--plot PATH``) and bench/plot.py draw their figures with
this module rather than with matplotlib: a bar chart and a timeline are a few
rectangles and labels, the output is the same bytes for the same numbers (no
dates, no random ids, so regenerated figures diff cleanly), and nothing needs
installing to run the scripts or their tests.

    bar_chart(path, title, [("label", value), ...], unit="x", reference=1.0)
    timeline(path, title, [Lane("name", [Span(start, end, "kind"), ...]), ...])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif"
CHAR = 6.6  # rough width of one 12 px character, for laying out labels
COLORS = ["#3f6fb5", "#e0892b", "#4a9a5b", "#b8453f", "#7d5ca8", "#8c6d4f", "#c65b9c", "#6f7780"]


def _text(x: float, y: float, text: str, *, size: int = 12, anchor: str = "start", weight: str = "normal") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'font-weight="{weight}">{escape(text)}</text>'
    )


def _document(width: float, height: float, title: str, body: list[str]) -> str:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" style="{FONT}">\n'
        f"<title>{escape(title)}</title>\n"
        # an opaque background: the figure stays readable on the site's dark theme too
        f'<rect width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>\n'
        f'<g fill="#222222">{_text(12, 22, title, size=14, weight="bold")}</g>\n'
    )
    return head + "\n".join(body) + "\n</svg>\n"


def _nice_step(span: float) -> float:
    """A round tick step (1, 2 or 5 times a power of ten) giving 4 to 10 ticks over span."""
    step = 10.0 ** math.floor(math.log10(span))
    for factor in (0.1, 0.2, 0.5, 1, 2, 5):
        if span / (step * factor) <= 10:
            return step * factor
    return step * 10


def _ticks(top: float) -> list[float]:
    """Round ticks from 0 to the first one at or above top."""
    step = _nice_step(top)
    count = math.ceil(top / step - 1e-9)
    return [round(i * step, 9) for i in range(count + 1)]


def _label(value: float) -> str:
    return f"{value:g}"


def bar_chart(
    path: str | Path,
    title: str,
    bars: Sequence[tuple[str, float]],
    *,
    unit: str = "",
    axis: str = "",
    reference: float | None = None,
    reference_label: str = "",
    colors: Sequence[str] | None = None,
    digits: int = 2,
) -> None:
    """Write a horizontal bar chart: one bar per (label, value), the value printed at its end.

    ``reference`` draws a dashed vertical line (say 1.0 for "as fast as the
    baseline"); ``colors`` gives each bar its colour (default: all the same).
    """
    if not bars:
        raise ValueError("bar_chart() needs at least one bar")
    label_width = max(len(label) for label, _ in bars) * CHAR + 24
    plot_width = 420.0
    row = 26.0
    top = 54.0
    width = label_width + plot_width + 90
    height = top + row * len(bars) + 52
    biggest = max([value for _, value in bars] + ([reference] if reference is not None else []))
    ticks = _ticks(biggest * 1.05 if biggest > 0 else 1.0)
    scale = plot_width / ticks[-1]
    body = ['<g fill="#222222" stroke="none">']
    bottom = top + row * len(bars)
    for tick in ticks:
        x = label_width + tick * scale
        body.append(f'<line x1="{x:.1f}" y1="{top - 4:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="#dddddd"/>')
        body.append(_text(x, bottom + 16, _label(tick), size=11, anchor="middle"))
    if axis:
        body.append(_text(label_width + plot_width / 2, bottom + 36, axis, size=12, anchor="middle"))
    for i, (label, value) in enumerate(bars):
        y = top + row * i
        color = colors[i] if colors else COLORS[0]
        body.append(_text(label_width - 8, y + row / 2 + 4, label, anchor="end"))
        body.append(
            f'<rect x="{label_width:.1f}" y="{y + 4:.1f}" width="{max(value, 0) * scale:.1f}" '
            f'height="{row - 8:.1f}" fill="{color}"><title>{escape(label)}: {value:.{digits}f}{unit}</title></rect>'
        )
        body.append(_text(label_width + max(value, 0) * scale + 6, y + row / 2 + 4, f"{value:.{digits}f}{unit}"))
    if reference is not None:
        x = label_width + reference * scale
        body.append(
            f'<line x1="{x:.1f}" y1="{top - 8:.1f}" x2="{x:.1f}" y2="{bottom + 2:.1f}" '
            'stroke="#222222" stroke-dasharray="4 3"/>'
        )
        if reference_label:
            body.append(_text(x + 4, top - 10, reference_label, size=11))
    body.append("</g>")
    Path(path).write_text(_document(width, height, title, body))


@dataclass(frozen=True)
class Span:
    """Something that ran from ``start`` to ``end`` (seconds); ``kind`` picks its colour and legend entry.

    A span with ``end == start`` is drawn as a tick mark (an instant, such as a timer firing).
    """

    start: float
    end: float
    kind: str


@dataclass
class Lane:
    """One row of a timeline: a thread, a process or a task, and what it did when."""

    name: str
    spans: list[Span] = field(default_factory=list)


def timeline(
    path: str | Path,
    title: str,
    lanes: Sequence[Lane],
    *,
    axis: str = "seconds since the start",
    colors: dict[str, str] | None = None,
) -> None:
    """Write a timeline: one row per lane, a coloured bar per span, a legend of the kinds."""
    if not lanes:
        raise ValueError("timeline() needs at least one lane")
    kinds: list[str] = []
    for lane in lanes:
        for span in lane.spans:
            if span.kind not in kinds:
                kinds.append(span.kind)
    palette = {kind: (colors or {}).get(kind, COLORS[i % len(COLORS)]) for i, kind in enumerate(kinds)}
    label_width = max(len(lane.name) for lane in lanes) * CHAR + 24
    plot_width = 560.0
    row = 24.0
    top = 40.0
    end = max((span.end for lane in lanes for span in lane.spans), default=1.0)
    ticks = _ticks(end if end > 0 else 1.0)
    scale = plot_width / ticks[-1]
    bottom = top + row * len(lanes)
    width = label_width + plot_width + 30
    legend: list[tuple[float, int, str]] = []  # x, row, kind: entries flow left to right, wrapping
    x, legend_row = label_width, 0
    for kind in kinds:
        entry = 18 + len(kind) * CHAR * 11 / 12 + 20
        if x + entry > width and x > label_width:
            x, legend_row = label_width, legend_row + 1
        legend.append((x, legend_row, kind))
        x += entry
    height = bottom + 48 + 20 * (legend_row + 1)
    body = ['<g fill="#222222" stroke="none">']
    for tick in ticks:
        x = label_width + tick * scale
        body.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="#dddddd"/>')
        body.append(_text(x, bottom + 15, _label(tick), size=11, anchor="middle"))
    body.append(_text(label_width + plot_width / 2, bottom + 32, axis, size=12, anchor="middle"))
    for i, lane in enumerate(lanes):
        y = top + row * i
        body.append(_text(label_width - 8, y + row / 2 + 4, lane.name, anchor="end"))
        for span in lane.spans:
            x = label_width + span.start * scale
            tip = f"{escape(span.kind)}: {span.start:.3f}-{span.end:.3f} s"
            if span.end <= span.start:
                body.append(
                    f'<line x1="{x:.1f}" y1="{y + 3:.1f}" x2="{x:.1f}" y2="{y + row - 3:.1f}" '
                    f'stroke="{palette[span.kind]}" stroke-width="1.5"><title>{tip}</title></line>'
                )
            else:
                body.append(
                    f'<rect x="{x:.1f}" y="{y + 4:.1f}" width="{max((span.end - span.start) * scale, 1.0):.1f}" '
                    f'height="{row - 8:.1f}" fill="{palette[span.kind]}" stroke="#ffffff" stroke-width="1">'
                    f"<title>{tip}</title></rect>"
                )
    for x, legend_row, kind in legend:
        y = bottom + 44 + 20 * legend_row
        body.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="12" height="12" fill="{palette[kind]}"/>')
        body.append(_text(x + 18, y + 10, kind, size=11))
    body.append("</g>")
    Path(path).write_text(_document(width, height, title, body))
