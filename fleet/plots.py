"""The report's plots: matplotlib figures rendered to inline SVG for :mod:`fleet.report`'s page.

:func:`render_plots` draws, from figures already checked by :func:`fleet.report.validate_figures`,
ledger throughput and write latency, the enrolment rate, authentications admitted and refused,
refusals by reason and revocation-to-refusal times, with every fault marked on each time plot.
Text is drawn as paths and ids are stable, so the same figures give the same SVG.
"""

from __future__ import annotations

import html
import io
import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # matplotlib takes a second to import: only rendering a page loads it
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["KIND_COLOURS", "render_plots"]

KIND_COLOURS: dict[str, str] = {"revocation": "#d62728", "suspension": "#ff7f0e", "quarantine": "#9467bd"}
"""The colour of each kind of change in the revocation-to-refusal plot."""


_RC: dict[str, Any] = {
    "svg.fonttype": "path",  # glyphs as paths: the page needs no font
    "svg.hashsalt": "trellis-fleet-report",  # stable ids: the same figures give the same page
    "text.parse_math": False,  # a '$' in a target or reason is text, not mathtext
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.framealpha": 0.8,
}
_RENDER_LOCK = threading.Lock()  # matplotlib's rcParams are process-wide
_FAULT_COLOUR = "#6b6b6b"
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL)
# Inline in HTML, <svg> and xlink:href need no namespace declarations (HTML's foreign-content rules).
_NAMESPACES = re.compile(r'\s+xmlns(?::xlink)?="[^"]*"')
_ID = re.compile(r'\bid="([^"]+)"')
_REF = re.compile(r'(href="#|url\(#)([^")]+)')


def _svg(figure: Figure, prefix: str, label: str) -> str:
    """The figure as inline SVG: no prolog or metadata, ids prefixed so several plots share a page."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = _METADATA.sub("", buffer.getvalue()[buffer.getvalue().index("<svg") :])
    text = _NAMESPACES.sub("", text, count=2)
    text = _ID.sub(lambda m: f'id="{prefix}-{m[1]}"', text)
    text = _REF.sub(lambda m: f"{m[1]}{prefix}-{m[2]}", text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{html.escape(label)}" ', 1)


def _legend(ax: Axes) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0)


def _no_data(ax: Axes, message: str = "no data") -> None:
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", fontsize=13, color="#888888")
    ax.texts[-1].set_gid("no-data")
    ax.set_yticks([])


def _time_axis(ax: Axes, name: str, x_max: float, faults: Sequence[Mapping[str, Any]], labels: bool) -> None:
    """Time on x from 0 to ``x_max``, and every fault marked: a span, or a line when it has no end."""
    ax.set_xlim(0, x_max)
    for number, fault in enumerate(faults, start=1):
        start, until = float(fault["t"]), fault["until"]
        if until is None:
            mark: Any = ax.axvline(start, color=_FAULT_COLOUR, linestyle="--", linewidth=1)
        else:
            mark = ax.axvspan(
                start, max(float(until), start + x_max / 500), color=_FAULT_COLOUR, alpha=0.16, lw=0
            )
        mark.set_gid(f"{name}-fault-{number}")
        if labels:
            text = ax.text(
                start,
                0.98,
                f" F{number} {fault['kind']} {fault['target']}",
                transform=ax.get_xaxis_transform(),
                rotation=90,
                ha="left",
                va="top",
                fontsize=7,
                color="#333333",
                clip_on=True,
                bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1},
            )
            text.set_gid(f"{name}-fault-{number}-label")


def _column(points: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [math.nan if p[key] is None else float(p[key]) for p in points]


def _by_time(points: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(points, key=lambda p: float(p["t"]))


def _plot_ledger(fig: Figure, figures: Mapping[str, Any], x_max: float) -> None:
    top, bottom = fig.subplots(2, 1, sharex=True)
    points = _by_time(figures["series"]["ledger"])
    times = _column(points, "t")
    if points:
        top.plot(times, _column(points, "txn_per_s"), color="#1f77b4", linewidth=1.2, label="committed txn/s")
        top.set_ylim(bottom=0)
    else:
        _no_data(top)
    p50, p99 = _column(points, "latency_ms_p50"), _column(points, "latency_ms_p99")
    if any(not math.isnan(v) for v in p50 + p99):
        bottom.plot(times, p50, color="#2ca02c", linewidth=1.2, label="p50")
        bottom.plot(times, p99, color="#d62728", linewidth=1.2, label="p99")
        bottom.set_ylim(bottom=0)
        _legend(bottom)
    else:
        _no_data(bottom, "no data" if not points else "no write latency samples")
    top.set_ylabel("txn/s")
    bottom.set_ylabel("write latency (ms)")
    bottom.set_xlabel("time since start (s)")
    _time_axis(top, "throughput", x_max, figures["faults"], labels=True)
    _time_axis(bottom, "latency", x_max, figures["faults"], labels=False)


def _plot_rates(
    fig: Figure, figures: Mapping[str, Any], x_max: float, series: str, lines: Sequence[tuple[str, str, str]]
) -> None:
    ax = fig.subplots()
    points = _by_time(figures["series"][series])
    if points:
        times = _column(points, "t")
        for key, label, colour in lines:
            ax.plot(times, _column(points, key), color=colour, linewidth=1.2, label=label)
            ax.fill_between(times, _column(points, key), color=colour, alpha=0.08, linewidth=0)
        ax.set_ylim(bottom=0)
        _legend(ax)
    else:
        _no_data(ax)
    ax.set_ylabel("per second")
    ax.set_xlabel("time since start (s)")
    _time_axis(ax, series, x_max, figures["faults"], labels=True)


def _plot_reasons(fig: Figure, figures: Mapping[str, Any], _x_max: float) -> None:
    ax = fig.subplots()
    reasons = sorted(figures["refusals_by_reason"].items(), key=lambda item: (-item[1], item[0]))
    if not reasons:
        _no_data(ax, "no refusals")
        ax.set_xticks([])
        return
    names, counts = [name for name, _ in reversed(reasons)], [count for _, count in reversed(reasons)]
    bars = ax.barh(names, counts, color="#d62728", alpha=0.8)
    ax.bar_label(bars, padding=3, fontsize=8)
    ax.set_xlim(0, max(counts) * 1.15 or 1)
    ax.set_xlabel("refusals")
    ax.grid(axis="y", visible=False)


def _plot_revocations(fig: Figure, figures: Mapping[str, Any], x_max: float) -> None:
    ax = fig.subplots()
    events = figures["revocations"]
    if events:
        for kind, colour in KIND_COLOURS.items():
            chosen = [e for e in events if e["kind"] == kind]
            if chosen:
                ax.scatter(
                    _column(chosen, "t"), _column(chosen, "ms"), s=14, color=colour, alpha=0.8, label=kind
                )
        p99 = figures["summary"]["revocation_to_refusal_ms_p99"]
        if p99 is not None:
            ax.axhline(p99, color="#333333", linestyle=":", linewidth=1.2, label=f"p99 {p99:.1f} ms")
            ax.lines[-1].set_gid("p99-line")
        ax.set_ylim(bottom=0)
        _legend(ax)
    else:
        _no_data(ax, "no revocations")
    ax.set_ylabel("revocation to refusal (ms)")
    ax.set_xlabel("revoked at, time since start (s)")
    _time_axis(ax, "revocations", x_max, figures["faults"], labels=True)


def _plot_enrolment(fig: Figure, figures: Mapping[str, Any], x_max: float) -> None:
    _plot_rates(fig, figures, x_max, "enrolment", [("enrolled_per_s", "enrolled/s", "#1f77b4")])


def _plot_auth(fig: Figure, figures: Mapping[str, Any], x_max: float) -> None:
    lines = [("admitted_per_s", "admitted/s", "#2ca02c"), ("refused_per_s", "refused/s", "#d62728")]
    _plot_rates(fig, figures, x_max, "auth", lines)


_PlotFunction = Callable[["Figure", Mapping[str, Any], float], None]
# id, heading, size in inches (height None: grows with the number of reasons), drawing function
_PLOTS: tuple[tuple[str, str, float | None, _PlotFunction], ...] = (
    ("ledger", "Ledger throughput and write latency", 5.2, _plot_ledger),
    ("enrolment", "Enrolment rate", 3.0, _plot_enrolment),
    ("auth", "Authentications: admitted and refused", 3.2, _plot_auth),
    ("reasons", "Refusals by reason", None, _plot_reasons),
    ("revocations", "Time from revocation to refusal", 3.4, _plot_revocations),
)


def _x_max(figures: Mapping[str, Any]) -> float:
    times = [float(figures["config"]["duration_s"])]
    times += [
        float(p["t"]) for points in figures["series"].values() if isinstance(points, list) for p in points
    ]
    times += [float(e["t"]) for e in figures["revocations"]]
    times += [float(f["until"] if f["until"] is not None else f["t"]) for f in figures["faults"]]
    return max(times) or 1.0


def render_plots(figures: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """``(id, heading, svg)`` for each plot."""
    import matplotlib.style
    from matplotlib.figure import Figure

    rendered = []
    x_max = _x_max(figures)
    with _RENDER_LOCK, matplotlib.style.context(["default", _RC]):
        for plot_id, heading, height, draw in _PLOTS:
            if height is None:
                height = 1.2 + 0.32 * max(len(figures["refusals_by_reason"]), 2)
            fig = Figure(figsize=(9, height), layout="constrained")
            draw(fig, figures, x_max)
            rendered.append((plot_id, heading, _svg(fig, f"plot-{plot_id}", heading)))
    return rendered
