"""The operator's report of a fleet simulation: one self-contained HTML page and the same figures as JSON.

A run hands its *figures*, a JSON-shaped mapping, to :func:`write_report`, which checks them against
the schema below (:class:`InvalidFigures` names the first field at fault), then writes ``report.json``
and ``report.html``. The page loads nothing from elsewhere: CSS sits in a ``<style>`` block, each plot
is inline SVG drawn by matplotlib with its text as paths, and the figures themselves are embedded as
``<script type="application/json" id="trellis-figures">`` (read back by :func:`read_embedded_figures`).
The same figures always give the same page. :func:`summary_text` is what a run prints at its end.

Schema (times are seconds since the run began; ``~`` marks a number that may be null)::

    title: str, generated_at: ISO 8601 str
    config: devices, validators, services: int; engine: str; duration_s: number; faults: [str]
    summary: see _SUMMARY_ROWS (counts are int, rates and ~percentiles numbers)
    invariants: [{name: str, ok: bool, detail: str}]
    series: ledger: [{t, txn_per_s, ~latency_ms_p50, ~latency_ms_p99}]
            enrolment: [{t, enrolled_per_s}]   auth: [{t, admitted_per_s, refused_per_s}]
    refusals_by_reason: {reason: int}
    revocations: [{t, kind: revocation|suspension|quarantine, did: str, service: str, ms}]
    faults: [{t, ~until, kind: str, target: str, detail: str}]

Numbers must be finite and not negative; extra keys are allowed anywhere and kept in the JSON.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from fleet.errors import FleetError
from fleet.plots import KIND_COLOURS, render_plots

__all__ = [
    "InvalidFigures",
    "FIGURES_SCRIPT_ID",
    "validate_figures",
    "write_report",
    "render_html",
    "summary_text",
    "read_embedded_figures",
]

FIGURES_SCRIPT_ID = "trellis-figures"
"""The ``id`` of the page's ``<script type="application/json">`` holding the figures."""


class InvalidFigures(FleetError, ValueError):
    """The figures do not fit the report's schema; ``field`` names the field at fault (``series.ledger[3].t``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid figures: {field}: {problem}")
        self.field = field
        self.problem = problem


# --- validation --------------------------------------------------------------------------------------

_Check = Callable[[Any, str], None]


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]


def _str(value: Any, path: str) -> None:
    if not isinstance(value, str):
        raise InvalidFigures(path, f"expected a string, got {_shown(value)}")


def _bool(value: Any, path: str) -> None:
    if not isinstance(value, bool):
        raise InvalidFigures(path, f"expected true or false, got {_shown(value)}")


def _count(value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidFigures(path, f"expected a non-negative integer, got {_shown(value)}")


def _num(value: Any, path: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidFigures(path, f"expected a finite non-negative number, got {_shown(value)}")


def _opt_num(value: Any, path: str) -> None:
    if value is not None:
        _num(value, path)


def _timestamp(value: Any, path: str) -> None:
    _str(value, path)
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise InvalidFigures(path, f"not an ISO 8601 date-time: {value!r}") from None


def _one_of(*choices: str) -> _Check:
    def check(value: Any, path: str) -> None:
        if value not in choices:
            raise InvalidFigures(path, f"expected one of {', '.join(choices)}, got {_shown(value)}")

    return check


def _list_of(item: _Check) -> _Check:
    def check(value: Any, path: str) -> None:
        if not isinstance(value, list | tuple):
            raise InvalidFigures(path, f"expected a list, got {_shown(value)}")
        for index, element in enumerate(value):
            item(element, f"{path}[{index}]")

    return check


def _map_of(item: _Check) -> _Check:
    def check(value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            raise InvalidFigures(path, f"expected an object, got {_shown(value)}")
        for key, element in value.items():
            _str(key, f"{path} key")
            item(element, f"{path}.{key}")

    return check


def _record(fields: Mapping[str, _Check], extra: _Check | None = None) -> _Check:
    def check(value: Any, path: str) -> None:
        if not isinstance(value, Mapping):
            raise InvalidFigures(path or "figures", f"expected an object, got {_shown(value)}")
        for key, field_check in fields.items():
            field_path = f"{path}.{key}" if path else key
            if key not in value:
                raise InvalidFigures(field_path, "missing")
            field_check(value[key], field_path)
        if extra is not None:
            extra(value, path)

    return check


def _fault_span(fault: Any, path: str) -> None:
    if fault["until"] is not None and fault["until"] < fault["t"]:
        raise InvalidFigures(f"{path}.until", f"ends ({fault['until']}) before it starts ({fault['t']})")


# key, label, unit, check: the summary table's rows in order, and the summary's schema.
_SUMMARY_ROWS: tuple[tuple[str, str, str, _Check], ...] = (
    ("devices", "Devices simulated", "", _count),
    ("enrolled", "Devices enrolled", "", _count),
    ("enrol_per_s", "Enrolment rate", "/s", _num),
    ("authentications", "Authentications", "", _count),
    ("auth_per_s", "Authentication rate", "/s", _num),
    ("refusals", "Refusals", "", _count),
    ("revocation_to_refusal_ms_p50", "Revocation to refusal, p50", "ms", _opt_num),
    ("revocation_to_refusal_ms_p99", "Revocation to refusal, p99", "ms", _opt_num),
    ("ledger_txn_per_s", "Ledger throughput", "txn/s", _num),
    ("write_latency_ms_p50", "Write latency, p50", "ms", _opt_num),
    ("write_latency_ms_p99", "Write latency, p99", "ms", _opt_num),
    ("final_height", "Final ledger height", "", _count),
    ("lost_writes", "Lost writes", "", _count),
    ("wrong_decisions", "Wrong decisions", "", _count),
)
_MUST_BE_ZERO = {"lost_writes", "wrong_decisions"}
_WRITE_SAMPLE = (
    "one sample per write waited for, handed over to committed: an enrolment batch "
    "(whatever its size), a status change, a quarantine, a key rotation"
)
"""What a write latency sample is (:mod:`fleet.operator` records them), said on the page and in the summary."""

_SCHEMA = _record(
    {
        "title": _str,
        "generated_at": _timestamp,
        "config": _record(
            {
                "devices": _count,
                "validators": _count,
                "engine": _str,
                "duration_s": _num,
                "faults": _list_of(_str),
                "services": _count,
            }
        ),
        "summary": _record({key: check for key, _, _, check in _SUMMARY_ROWS}),
        "invariants": _list_of(_record({"name": _str, "ok": _bool, "detail": _str})),
        "series": _record(
            {
                "ledger": _list_of(
                    _record(
                        {"t": _num, "txn_per_s": _num, "latency_ms_p50": _opt_num, "latency_ms_p99": _opt_num}
                    )
                ),
                "enrolment": _list_of(_record({"t": _num, "enrolled_per_s": _num})),
                "auth": _list_of(_record({"t": _num, "admitted_per_s": _num, "refused_per_s": _num})),
            }
        ),
        "refusals_by_reason": _map_of(_count),
        "revocations": _list_of(
            _record({"t": _num, "kind": _one_of(*KIND_COLOURS), "did": _str, "service": _str, "ms": _num})
        ),
        "faults": _list_of(
            _record(
                {"t": _num, "until": _opt_num, "kind": _str, "target": _str, "detail": _str},
                extra=_fault_span,
            )
        ),
    }
)


def validate_figures(figures: Mapping[str, Any]) -> None:
    """Check ``figures`` against the schema; raise :class:`InvalidFigures` naming the first bad field."""
    _SCHEMA(figures, "")
    try:
        json.dumps(figures, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidFigures("figures", f"not JSON-serialisable: {error}") from None


# --- page --------------------------------------------------------------------------------------------

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1d1d1f; background: #fafafa; margin: 0; }
main { max-width: 1080px; margin: 0 auto; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.7rem; margin: 0 0 .2rem; } h2 { font-size: 1.25rem; margin: 2rem 0 .6rem; border-bottom: 1px solid #ddd; }
.meta { color: #666; margin: 0; }
table { border-collapse: collapse; background: #fff; margin: .3rem 0; }
th, td { border: 1px solid #ddd; padding: .3rem .7rem; text-align: left; vertical-align: top; }
th { background: #f0f0f2; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.bad { color: #b00020; font-weight: 700; }
.mark { display: inline-block; min-width: 4.5em; text-align: center; border-radius: 4px; font-weight: 700; padding: 0 .4em; }
.ok { background: #e3f4e6; color: #17652a; } .failed { background: #fde2e4; color: #b00020; }
.verdict { font-weight: 600; }
figure { background: #fff; border: 1px solid #ddd; margin: 0 0 1.2rem; padding: .6rem; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-weight: 600; margin-bottom: .3rem; }
"""


def _number(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _seconds(value: Any) -> str:
    return "open" if value is None else f"{float(value):.1f}"


def _rows(cells: Sequence[Sequence[str]]) -> str:
    return "\n".join("<tr>" + "".join(row) + "</tr>" for row in cells)


def _td(text: Any, attrs: str = "") -> str:
    return f"<td{attrs}>{html.escape(str(text))}</td>"


def _config_section(config: Mapping[str, Any]) -> str:
    rows = []
    for key, value in config.items():
        shown = (", ".join(map(str, value)) or "none") if isinstance(value, list) else value
        rows.append(
            [
                f"<th>{html.escape(str(key))}</th>",
                _td(shown, ' class="num"' if isinstance(value, int | float) else ""),
            ]
        )
    return f'<section id="config"><h2>Configuration</h2><table>{_rows(rows)}</table></section>'


def _summary_section(summary: Mapping[str, Any]) -> str:
    rows = [(key, label, unit) for key, label, unit, _ in _SUMMARY_ROWS]
    known = {key for key, _, _ in rows}
    rows += [(k, k, "") for k, v in summary.items() if k not in known and isinstance(v, int | float | None)]
    cells = []
    for key, label, unit in rows:
        value = summary[key]
        css = "num bad" if key in _MUST_BE_ZERO and value else "num"
        attrs = f' class="{css}" data-key="{html.escape(key)}" data-value="{html.escape(json.dumps(value))}"'
        cells.append([f"<th>{html.escape(label)}</th>", _td(_number(value), attrs), _td(unit)])
    head = "<tr><th>Figure</th><th>Value</th><th>Unit</th></tr>"
    note = f'<p class="meta" id="write-latency-note">Write latency: {html.escape(_WRITE_SAMPLE)}.</p>'
    return f'<section id="summary"><h2>Summary</h2><table>{head}{_rows(cells)}</table>{note}</section>'


def _invariants_section(invariants: Sequence[Mapping[str, Any]]) -> str:
    failed = sum(1 for i in invariants if not i["ok"])
    if not invariants:
        verdict = "No invariants were checked."
    elif failed:
        verdict = f"{failed} of {len(invariants)} invariants FAILED."
    else:
        verdict = f"All {len(invariants)} invariants hold."
    rows = []
    for item in invariants:
        mark = '<span class="mark ok">OK</span>' if item["ok"] else '<span class="mark failed">FAILED</span>'
        rows.append([f"<td>{mark}</td>", _td(item["name"]), _td(item["detail"])])
    table = (
        f"<table><tr><th>Result</th><th>Invariant</th><th>Detail</th></tr>{_rows(rows)}</table>"
        if rows
        else ""
    )
    return f'<section id="invariants"><h2>Invariants</h2><p class="verdict">{html.escape(verdict)}</p>{table}</section>'


def _faults_section(faults: Sequence[Mapping[str, Any]]) -> str:
    if not faults:
        return '<section id="faults"><h2>Faults injected</h2><p>No faults were injected.</p></section>'
    rows = []
    for number, fault in enumerate(faults, start=1):
        duration = "" if fault["until"] is None else f"{float(fault['until']) - float(fault['t']):.1f}"
        rows.append(
            [
                _td(f"F{number}"),
                _td(_seconds(fault["t"]), ' class="num"'),
                _td(_seconds(fault["until"]), ' class="num"'),
                _td(duration, ' class="num"'),
                _td(fault["kind"]),
                _td(fault["target"]),
                _td(fault["detail"]),
            ]
        )
    head = "<tr><th>Mark</th><th>From (s)</th><th>Until (s)</th><th>Duration (s)</th>"
    head += "<th>Kind</th><th>Target</th><th>Detail</th></tr>"
    return (
        '<section id="faults"><h2>Faults injected</h2>'
        f'<table id="faults-table">{head}{_rows(rows)}</table></section>'
    )


def _embedded_json(figures: Mapping[str, Any]) -> str:
    text = json.dumps(figures, sort_keys=True, allow_nan=False)
    # Inside <script> only "</" (closing the element) and "<!--" (script-data escape) are dangerous.
    return text.replace("</", "<\\/").replace("<!--", "<\\u0021--")


def render_html(figures: Mapping[str, Any]) -> str:
    """The report page for valid ``figures`` (checked first: :class:`InvalidFigures`), self-contained."""
    validate_figures(figures)
    title = html.escape(figures["title"])
    plots = "\n".join(
        f'<figure id="plot-{pid}"><figcaption>{html.escape(heading)}</figcaption>{svg}</figure>'
        for pid, heading, svg in render_plots(figures)
    )
    faults_note = "Grey spans and dashed lines mark injected faults (F1, F2, … as in the table below)."
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<header><h1>{title}</h1>
<p class="meta">Generated <time datetime="{html.escape(figures["generated_at"])}">{html.escape(figures["generated_at"])}</time></p></header>
{_config_section(figures["config"])}
{_summary_section(figures["summary"])}
{_invariants_section(figures["invariants"])}
<section id="plots"><h2>Plots</h2><p class="meta">{html.escape(faults_note)}</p>
{plots}
</section>
{_faults_section(figures["faults"])}
</main>
<script type="application/json" id="{FIGURES_SCRIPT_ID}">{_embedded_json(figures)}</script>
</body>
</html>
"""


def write_report(figures: Mapping[str, Any], directory: str | Path) -> tuple[Path, Path]:
    """Check ``figures``, then write ``report.json`` and ``report.html`` into ``directory``; their paths.

    Nothing is written (and the directory is not made) when the figures are invalid.
    """
    page = render_html(figures)
    document = json.dumps(figures, indent=2, sort_keys=True, allow_nan=False) + "\n"
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    json_path, html_path = folder / "report.json", folder / "report.html"
    json_path.write_text(document, encoding="utf-8")
    html_path.write_text(page, encoding="utf-8")
    return json_path, html_path


def summary_text(figures: Mapping[str, Any]) -> str:
    """The summary a run prints at its end: key figures, then each invariant marked OK or FAILED."""
    validate_figures(figures)
    s, c = figures["summary"], figures["config"]
    reasons = sorted(figures["refusals_by_reason"].items(), key=lambda item: (-item[1], item[0]))
    kinds = sorted({f["kind"] for f in figures["faults"]})
    lines = [
        figures["title"],
        f"  run             {c['devices']} devices, {c['validators']} validators ({c['engine']}), "
        f"{c['services']} services, {_number(c['duration_s'], 1)} s",
        f"  enrolment       {s['enrolled']} of {s['devices']} enrolled, {_number(s['enrol_per_s'])}/s",
        f"  authentication  {s['authentications']} ({_number(s['auth_per_s'])}/s), {s['refusals']} refused",
        "  refusals        " + (", ".join(f"{name} {count}" for name, count in reasons) or "none"),
        f"  revocation      refused after p50 {_number(s['revocation_to_refusal_ms_p50'])} ms, "
        f"p99 {_number(s['revocation_to_refusal_ms_p99'])} ms",
        f"  ledger          {_number(s['ledger_txn_per_s'])} txn/s, write latency p50 "
        f"{_number(s['write_latency_ms_p50'])} ms, p99 {_number(s['write_latency_ms_p99'])} ms, "
        f"height {s['final_height']}",
        f"                  write latency: {_WRITE_SAMPLE}",
        f"  integrity       {s['lost_writes']} lost writes, {s['wrong_decisions']} wrong decisions",
        f"  faults          {len(figures['faults'])} injected" + (f" ({', '.join(kinds)})" if kinds else ""),
    ]
    invariants = figures["invariants"]
    failed = sum(1 for i in invariants if not i["ok"])
    lines.append(f"invariants: {len(invariants) - failed} OK, {failed} FAILED")
    lines += [f"  {'OK' if i['ok'] else 'FAILED':<6}  {i['name']}: {i['detail']}" for i in invariants]
    return "\n".join(lines)


class _FiguresScript(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inside = False
        self.found = False
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script" and not self.found and dict(attrs).get("id") == FIGURES_SCRIPT_ID:
            self.inside = self.found = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.parts.append(data)


def read_embedded_figures(page: str) -> dict[str, Any]:
    """The figures embedded in a report page (its ``<script id="trellis-figures">``), parsed."""
    parser = _FiguresScript()
    parser.feed(page)
    parser.close()
    if not parser.found:
        raise InvalidFigures("page", f'no <script id="{FIGURES_SCRIPT_ID}"> in the page')
    try:
        figures = json.loads("".join(parser.parts))
    except json.JSONDecodeError as error:
        raise InvalidFigures("page", f"the embedded figures are not JSON: {error}") from None
    if not isinstance(figures, dict):
        raise InvalidFigures("page", "the embedded figures are not a JSON object")
    return figures
