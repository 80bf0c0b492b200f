"""The fleet simulation's report: report.json holds the figures, report.html shows the same ones, self-contained."""

from __future__ import annotations

import copy
import json
import math
import random
import re
import statistics
import time
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from fleet.report import (
    InvalidFigures,
    read_embedded_figures,
    render_html,
    summary_text,
    validate_figures,
    write_report,
)

FAULTS: list[dict[str, Any]] = [
    {
        "t": 60.0,
        "until": 95.0,
        "kind": "partition",
        "target": "validator-2",
        "detail": "cut from validators 0, 1, 3",
    },
    {
        "t": 150.0,
        "until": None,
        "kind": "crash",
        "target": "validator-3",
        "detail": "killed with SIGKILL, not restarted",
    },
    {"t": 210.0, "until": 240.0, "kind": "latency", "target": "ledger", "detail": "+80 ms on every link"},
]
REASONS = ["revoked", "suspended", "quarantined", "bad_signature", "replayed", "challenge_expired"]


def _in_fault(t: float) -> str | None:
    for fault in FAULTS:
        until = fault["until"] if fault["until"] is not None else math.inf
        if fault["t"] <= t < until:
            return str(fault["kind"])
    return None


def make_figures(points: int = 300, seed: int = 7) -> dict[str, Any]:
    """Figures as a 300 s run of 2,000 devices might give: one point per series per second/step, three faults."""
    rng = random.Random(seed)
    duration = 300.0
    step = duration / points
    ledger: list[dict[str, Any]] = []
    enrolment: list[dict[str, Any]] = []
    auth: list[dict[str, Any]] = []
    for i in range(points):
        t = round(i * step, 3)
        fault = _in_fault(t)
        slow = 4.0 if fault == "latency" else 1.0
        txn = max(0.0, rng.gauss(90, 8) * (0.2 if fault == "partition" else 1.0))
        p50 = None if fault == "partition" and rng.random() < 0.5 else rng.gauss(18, 2) * slow
        ledger.append(
            {
                "t": t,
                "txn_per_s": round(txn, 2),
                "latency_ms_p50": None if p50 is None else round(p50, 2),
                "latency_ms_p99": None if p50 is None else round(p50 * rng.uniform(2.5, 4), 2),
            }
        )
        enrolment.append(
            {"t": t, "enrolled_per_s": round(max(0.0, 40 * math.exp(-t / 40) + rng.gauss(0, 1)), 2)}
        )
        admitted = max(0.0, rng.gauss(150, 12) * min(1.0, t / 30 + 0.05))
        auth.append(
            {"t": t, "admitted_per_s": round(admitted, 2), "refused_per_s": round(rng.uniform(0, 6), 2)}
        )
    revocations: list[dict[str, Any]] = []
    for _ in range(120):
        t = round(rng.uniform(20, duration - 5), 2)
        kind = rng.choice(["revocation", "revocation", "suspension", "quarantine"])
        ms = rng.lognormvariate(math.log(40), 0.5) * (3 if _in_fault(t) else 1)
        did = f"did:trellis:dev:{rng.getrandbits(64):016x}"
        revocations.append(
            {"t": t, "kind": kind, "did": did, "service": f"svc-{rng.randrange(4)}", "ms": round(ms, 2)}
        )
    revocations.sort(key=lambda r: r["t"])
    refusals = {reason: rng.randrange(1, 400) for reason in REASONS}
    latencies = [p["latency_ms_p50"] for p in ledger if p["latency_ms_p50"] is not None]
    revocation_ms = [r["ms"] for r in revocations]
    cuts = statistics.quantiles(revocation_ms, n=100)
    authentications = round(sum(p["admitted_per_s"] + p["refused_per_s"] for p in auth) * step)
    return {
        "title": "Fleet simulation: 2000 devices, 4 validators (pbft)",
        "generated_at": "2026-11-24T07:30:00+00:00",
        "config": {
            "devices": 2000,
            "validators": 4,
            "engine": "pbft",
            "duration_s": duration,
            "faults": [f"{f['kind']}:{f['target']}" for f in FAULTS],
            "services": 4,
        },
        "summary": {
            "devices": 2000,
            "enrolled": 1987,
            "enrol_per_s": round(1987 / duration, 3),
            "authentications": authentications,
            "auth_per_s": round(authentications / duration, 3),
            "refusals": sum(refusals.values()),
            "revocation_to_refusal_ms_p50": round(statistics.median(revocation_ms), 3),
            "revocation_to_refusal_ms_p99": round(cuts[98], 3),
            "ledger_txn_per_s": round(statistics.fmean(p["txn_per_s"] for p in ledger), 3),
            "write_latency_ms_p50": round(statistics.median(latencies), 3),
            "write_latency_ms_p99": round(statistics.quantiles(latencies, n=100)[98], 3),
            "final_height": 24711,
            "lost_writes": 0,
            "wrong_decisions": 0,
        },
        "invariants": [
            {
                "name": "no lost writes",
                "ok": True,
                "detail": "all 24,711 acknowledged writes are on every replica",
            },
            {
                "name": "replicas agree",
                "ok": True,
                "detail": "4 validators report the same head hash at 24711",
            },
            {"name": "revoked devices refused", "ok": True, "detail": "120 of 120 refused within 1 s"},
            {
                "name": "no wrong decisions",
                "ok": True,
                "detail": "0 admitted after revocation, 0 refused in good standing",
            },
        ],
        "series": {"ledger": ledger, "enrolment": enrolment, "auth": auth},
        "refusals_by_reason": refusals,
        "revocations": revocations,
        "faults": copy.deepcopy(FAULTS),
    }


def empty_figures() -> dict[str, Any]:
    """A run that measured nothing: no points, no refusals, no revocations, no faults, no invariants."""
    figures = make_figures(points=10)
    figures["series"] = {"ledger": [], "enrolment": [], "auth": []}
    figures["refusals_by_reason"] = {}
    figures["revocations"] = []
    figures["faults"] = []
    figures["invariants"] = []
    for key in ("revocation_to_refusal_ms_p50", "revocation_to_refusal_ms_p99"):
        figures["summary"][key] = None
    for key in ("write_latency_ms_p50", "write_latency_ms_p99"):
        figures["summary"][key] = None
    return figures


class _Page(HTMLParser):
    """What the tests read from a page: summary cells, table rows by table id, every tag's attributes."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.cells: dict[str, tuple[str, str]] = {}  # data-key -> (data-value, text)
        self.tables: dict[str, list[list[str]]] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: list[str] = []
        self._table: list[str] = []
        self._cell: list[str] | None = None
        self._key: tuple[str, str] | None = None
        self.feed(page)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.tags.append((tag, named))
        if named.get("id"):
            self.ids.append(str(named["id"]))
        if tag == "table":
            self._table.append(str(named.get("id") or f"table-{len(self.tables)}"))
            self.tables[self._table[-1]] = []
        elif tag == "tr" and self._table:
            self.tables[self._table[-1]].append([])
        elif tag in ("td", "th"):
            self._cell = []
            if "data-key" in named:
                self._key = (str(named["data-key"]), str(named["data-value"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table.pop()
        elif tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            if self._table:
                self.tables[self._table[-1]][-1].append(text)
            if self._key is not None:
                self.cells[self._key[0]] = (self._key[1], text)
            self._cell, self._key = None, None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


@pytest.fixture(scope="module")
def figures() -> dict[str, Any]:
    """Realistic figures (300 points per series, 120 revocations, 3 faults)."""
    return make_figures()


@pytest.fixture(scope="module")
def written(figures: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The report of ``figures`` written once for the module."""
    return write_report(figures, tmp_path_factory.mktemp("report") / "out")


@pytest.fixture(scope="module")
def page(written: tuple[Path, Path]) -> _Page:
    """The written page, parsed."""
    return _Page(written[1].read_text(encoding="utf-8"))


def test_writes_report_json_and_html_into_a_new_directory(written: tuple[Path, Path]) -> None:
    """write_report makes the directory and returns the paths of report.json and report.html in it."""
    json_path, html_path = written
    assert (json_path.name, html_path.name) == ("report.json", "report.html")
    assert json_path.parent == html_path.parent
    assert json_path.is_file() and html_path.is_file()


def test_json_file_equals_the_figures(figures: dict[str, Any], written: tuple[Path, Path]) -> None:
    """report.json parses back equal to the figures given, with sorted keys and indentation."""
    text = written[0].read_text(encoding="utf-8")
    assert json.loads(text) == figures
    assert text == json.dumps(figures, indent=2, sort_keys=True) + "\n"


def test_embedded_json_equals_report_json(written: tuple[Path, Path]) -> None:
    """The figures embedded in the page parse back equal to report.json."""
    embedded = read_embedded_figures(written[1].read_text(encoding="utf-8"))
    assert embedded == json.loads(written[0].read_text(encoding="utf-8"))


def test_every_summary_cell_shows_the_json_value(page: _Page, written: tuple[Path, Path]) -> None:
    """Each summary figure has a data-key cell whose exact value and shown text match report.json."""
    summary = json.loads(written[0].read_text(encoding="utf-8"))["summary"]
    assert set(page.cells) == set(summary)
    for key, value in summary.items():
        exact, text = page.cells[key]
        assert json.loads(exact) == value, key
        if value is None:
            assert text == "n/a"
        else:
            assert float(text) == pytest.approx(value, abs=0.005 + 1e-9), key


def test_summary_cells_show_null_percentiles_as_not_available(tmp_path: Path) -> None:
    """A percentile with no samples (null) is shown as n/a and kept null in the cell's value."""
    _, html_path = write_report(empty_figures(), tmp_path)
    cells = _Page(html_path.read_text(encoding="utf-8")).cells
    assert cells["write_latency_ms_p99"] == ("null", "n/a")
    assert cells["revocation_to_refusal_ms_p50"] == ("null", "n/a")


def test_extra_keys_are_kept_in_json_and_page(tmp_path: Path) -> None:
    """Keys outside the schema are allowed, kept in report.json and the embedded figures."""
    figures = make_figures(points=20)
    figures["seed"] = 42
    figures["summary"]["sessions_opened"] = 17
    json_path, html_path = write_report(figures, tmp_path)
    assert json.loads(json_path.read_text(encoding="utf-8"))["seed"] == 42
    page = html_path.read_text(encoding="utf-8")
    assert read_embedded_figures(page)["summary"]["sessions_opened"] == 17
    assert _Page(page).cells["sessions_opened"] == ("17", "17")


def test_every_fault_is_a_row_of_the_faults_table(figures: dict[str, Any], page: _Page) -> None:
    """Each injected fault appears in the faults table with its mark, times, kind, target and detail."""
    rows = page.tables["faults-table"][1:]
    assert len(rows) == len(figures["faults"])
    for number, fault in enumerate(figures["faults"], start=1):
        until = "open" if fault["until"] is None else f"{fault['until']:.1f}"
        expected = [f"F{number}", f"{fault['t']:.1f}", until]
        assert [f"F{number}", *rows[number - 1][1:3]] == expected
        assert rows[number - 1][4:] == [fault["kind"], fault["target"], fault["detail"]]


def test_every_time_plot_marks_every_fault(figures: dict[str, Any], page: _Page) -> None:
    """Ledger, enrolment, authentication and revocation plots each carry a mark per fault."""
    for axes in (
        "ledger-throughput",
        "ledger-latency",
        "enrolment-enrolment",
        "auth-auth",
        "revocations-revocations",
    ):
        for number in range(1, len(figures["faults"]) + 1):
            assert f"plot-{axes}-fault-{number}" in page.ids, (axes, number)
    labelled = [i for i in page.ids if i.endswith("-label")]
    assert len(labelled) == 4 * len(figures["faults"])


def test_page_has_the_five_plots_as_inline_svg(page: _Page) -> None:
    """The plots section holds five figures, each an inline SVG (no image files)."""
    figures_ = [attrs["id"] for tag, attrs in page.tags if tag == "figure"]
    assert figures_ == ["plot-ledger", "plot-enrolment", "plot-auth", "plot-reasons", "plot-revocations"]
    assert sum(1 for tag, _ in page.tags if tag == "svg") == 5
    assert not [tag for tag, _ in page.tags if tag in ("img", "object", "embed", "iframe")]
    assert "plot-revocations-p99-line" in page.ids


def test_ids_are_unique_and_references_resolve(page: _Page, written: tuple[Path, Path]) -> None:
    """Several SVGs share the page without clashing ids, and every in-page reference finds its target."""
    assert len(page.ids) == len(set(page.ids))
    text = written[1].read_text(encoding="utf-8")
    references = set(re.findall(r'href="#([^"]+)"', text)) | set(re.findall(r"url\(#([^)]+)\)", text))
    assert references
    assert references <= set(page.ids)


def test_page_has_no_external_references(written: tuple[Path, Path], page: _Page) -> None:
    """Nothing is loaded from elsewhere: only in-page (#) references, no stylesheet links, no scripts run."""
    text = written[1].read_text(encoding="utf-8")
    for tag, attrs in page.tags:
        assert tag not in ("link", "img", "iframe", "object", "embed", "base")
        for name, value in attrs.items():
            if name in ("src", "href", "xlink:href", "action", "data", "poster", "srcset", "background"):
                assert value is not None and value.startswith("#"), (tag, name, value)
        if tag == "script":
            assert attrs == {"type": "application/json", "id": "trellis-figures"}
    assert "@import" not in text and "@font-face" not in text
    assert "url(http" not in text and "url(//" not in text
    assert "http:" not in text and "https:" not in text


def test_failed_invariant_is_marked_failed(tmp_path: Path) -> None:
    """A failed invariant's row says FAILED, the others OK, and the verdict counts the failure."""
    figures = make_figures(points=30)
    figures["invariants"][1] = {
        "name": "replicas agree",
        "ok": False,
        "detail": "validator-2 diverges at 812",
    }
    _, html_path = write_report(figures, tmp_path)
    page = _Page(html_path.read_text(encoding="utf-8"))
    rows = {
        row[1]: row
        for row in next(t for t in page.tables.values() if t[0][:2] == ["Result", "Invariant"])[1:]
    }
    assert rows["replicas agree"] == ["FAILED", "replicas agree", "validator-2 diverges at 812"]
    assert [
        rows[name][0] for name in ("no lost writes", "revoked devices refused", "no wrong decisions")
    ] == ["OK"] * 3
    assert "1 of 4 invariants FAILED." in html_path.read_text(encoding="utf-8")


def _drop(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def edit(figures: dict[str, Any]) -> None:
        target: Any = figures
        for step in path[:-1]:
            target = target[step]
        del target[path[-1]]

    return edit


def _put(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(figures: dict[str, Any]) -> None:
        target: Any = figures
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return edit


INVALID = [
    (_drop(("title",)), "title"),
    (_drop(("summary", "enrolled")), "summary.enrolled"),
    (_drop(("series", "auth")), "series.auth"),
    (_put(("generated_at",), "yesterday"), "generated_at"),
    (_put(("config", "devices"), "2000"), "config.devices"),
    (_put(("config", "validators"), True), "config.validators"),
    (_put(("config", "faults"), "partition"), "config.faults"),
    (_put(("summary", "auth_per_s"), math.nan), "summary.auth_per_s"),
    (_put(("summary", "final_height"), 12.5), "summary.final_height"),
    (_put(("summary", "lost_writes"), -1), "summary.lost_writes"),
    (_put(("series", "ledger", 5, "t"), "5"), "series.ledger[5].t"),
    (_drop(("series", "enrolment", 7, "enrolled_per_s")), "series.enrolment[7].enrolled_per_s"),
    (_put(("invariants", 2, "ok"), "yes"), "invariants[2].ok"),
    (_put(("refusals_by_reason", "revoked"), 2.0), "refusals_by_reason.revoked"),
    (_put(("revocations", 3, "kind"), "deactivation"), "revocations[3].kind"),
    (_put(("faults", 0, "until"), 10.0), "faults[0].until"),
    (_put(("faults",), {"t": 1}), "faults"),
    (_put(("extra",), {1, 2}), "figures"),
]


@pytest.mark.parametrize(("edit", "field"), INVALID, ids=[field for _, field in INVALID])
def test_invalid_figures_are_refused_naming_the_field(
    edit: Callable[[dict[str, Any]], None], field: str, tmp_path: Path
) -> None:
    """Figures that break the schema raise InvalidFigures naming the field, and nothing is written."""
    figures = make_figures(points=12)
    edit(figures)
    target = tmp_path / "out"
    with pytest.raises(InvalidFigures) as caught:
        write_report(figures, target)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert not target.exists()


def test_valid_figures_pass_validation(figures: dict[str, Any]) -> None:
    """The realistic figures, ints where numbers are asked included, are valid."""
    figures = copy.deepcopy(figures)
    figures["summary"]["enrol_per_s"] = 7
    validate_figures(figures)


def test_empty_series_render_no_data_plots(tmp_path: Path) -> None:
    """A run with no points, refusals, revocations or faults still gives a page; each plot says so."""
    json_path, html_path = write_report(empty_figures(), tmp_path)
    page = _Page(html_path.read_text(encoding="utf-8"))
    empty = {i.removeprefix("plot-").removesuffix("-no-data") for i in page.ids if i.endswith("-no-data")}
    assert empty == {"ledger", "enrolment", "auth", "reasons", "revocations"}
    assert "No faults were injected." in html_path.read_text(encoding="utf-8")
    assert read_embedded_figures(html_path.read_text(encoding="utf-8")) == json.loads(json_path.read_text())


def test_latency_gaps_render(tmp_path: Path) -> None:
    """Ledger points without latency samples (null percentiles) render, as gaps in the latency lines."""
    figures = make_figures(points=50)
    for point in figures["series"]["ledger"]:
        point["latency_ms_p50"] = point["latency_ms_p99"] = None
    page = _Page(render_html(figures))
    assert "plot-ledger-no-data" in page.ids


def test_text_is_escaped_everywhere(tmp_path: Path) -> None:
    """Markup in titles, details or reasons is shown as text, and cannot end the embedded JSON early."""
    figures = make_figures(points=20)
    hostile = "</script><script>alert(1)</script><!--"
    figures["title"] = f"Run {hostile}"
    figures["faults"][0]["detail"] = hostile
    figures["invariants"][0]["detail"] = hostile
    figures["refusals_by_reason"][hostile] = 3
    page = render_html(figures)
    outside_json = page[: page.index('<script type="application/json"')]
    assert "<script>alert" not in outside_json and "&lt;script&gt;alert(1)" in outside_json
    parsed = _Page(page)
    assert [tag for tag, _ in parsed.tags].count("script") == 1
    assert parsed.tables["faults-table"][1][-1] == hostile
    assert read_embedded_figures(page) == json.loads(json.dumps(figures))


def test_same_figures_give_the_same_page(figures: dict[str, Any]) -> None:
    """Rendering is deterministic: no dates, random ids or salts vary between two renders."""
    assert render_html(figures) == render_html(copy.deepcopy(figures))


def test_render_600_points_takes_under_two_seconds_of_cpu() -> None:
    """600 points per series render in under 2 s of CPU time (CPU time: the machine is shared)."""
    figures = make_figures(points=600)
    render_html(figures)  # warm matplotlib's font and path caches
    started = time.process_time()
    render_html(figures)
    assert time.process_time() - started < 2.0


def test_summary_text_names_every_invariant_with_its_result() -> None:
    """The printed summary marks each invariant OK or FAILED beside its name, and counts them."""
    figures = make_figures(points=30)
    figures["invariants"][3]["ok"] = False
    text = summary_text(figures)
    for invariant in figures["invariants"]:
        line = next(line for line in text.splitlines() if f"{invariant['name']}: " in line)
        assert line.split()[0] == ("OK" if invariant["ok"] else "FAILED")
    assert "invariants: 3 OK, 1 FAILED" in text


def test_summary_text_gives_the_key_figures_and_not_the_report() -> None:
    """The summary states the run's key figures and leaves the report's location to the caller."""
    figures = make_figures(points=30)
    text = summary_text(figures)
    s = figures["summary"]
    for shown in (
        f"{s['enrolled']} of {s['devices']} enrolled",
        f"{s['refusals']} refused",
        f"height {s['final_height']}",
        f"p99 {s['revocation_to_refusal_ms_p99']:.2f} ms",
        f"{len(figures['faults'])} injected",
    ):
        assert shown in text
    assert "report.html" not in text and "report.json" not in text


def test_the_report_says_what_a_write_latency_sample_is() -> None:
    """Both the page and the printed summary say a write latency sample is one write waited for (an
    enrolment batch counts once, whatever its size), next to the figures."""
    figures = make_figures(points=12)
    text = summary_text(figures)
    ledger = text.splitlines().index(next(line for line in text.splitlines() if "write latency p50" in line))
    assert "one sample per write" in text.splitlines()[ledger + 1]
    assert "an enrolment batch (whatever its size)" in text
    note = re.search(r'<p class="meta" id="write-latency-note">([^<]*)</p>', render_html(figures))
    assert note is not None
    assert "Write latency: one sample per write" in note.group(1)
    assert "enrolment batch (whatever its size)" in note.group(1)


def test_summary_text_refuses_invalid_figures() -> None:
    """summary_text checks the figures as write_report does."""
    figures = make_figures(points=12)
    del figures["summary"]["refusals"]
    with pytest.raises(InvalidFigures, match=r"summary\.refusals"):
        summary_text(figures)


def test_read_embedded_figures_without_figures_raises() -> None:
    """A page without the embedded figures is refused, naming what is missing."""
    with pytest.raises(InvalidFigures, match="trellis-figures"):
        read_embedded_figures("<!DOCTYPE html><html><body><p>nothing here</p></body></html>")
