"""`partner-api exposure --format html`: a partner's exposure report as one self-contained HTML file.

For a data-protection officer who must decide whom to notify: the disclosures per day and per practice as
bar charts, the field groups shown, the alerts raised, and the patient list (names only when asked for).
The charts are SVG written here (a few rectangles: a charting library would need scripts or a CDN), and the
page's Content-Security-Policy forbids every request, so opening it reaches nothing outside the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from api.ledger.access import group_names
from api.ledger.exposure import COUNTED_GROUPS, Alert, PartnerExposure

__all__ = ["CONTENT_SECURITY_POLICY", "render"]

CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src 'none'; base-uri 'none'"
_BAR, _GAP, _LABEL, _HEIGHT = 18, 6, 260, 200

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #1d2733; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #d0d7de; }
table { border-collapse: collapse; width: 100%; } th, td { padding: .3em .6em; border-bottom: 1px solid #eaeef2; }
th { text-align: left; background: #f6f8fa; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.summary { display: flex; gap: 2em; } .summary div { background: #f6f8fa; padding: .8em 1.2em; border-radius: 6px; }
.summary strong { display: block; font-size: 1.6em; } svg text { font-size: 11px; fill: #1d2733; }
svg .bar { fill: #2f6fb3; } .none { color: #57606a; font-style: italic; }
"""


def render(report: PartnerExposure, alerts: Sequence[Alert], with_names: bool) -> str:
    who = report.partner + (f" (key {report.key_prefix})" if report.key_prefix else "")
    period = f"{_when(report.since)} to {_when(report.until)}"
    appointments = sum(p.appointments for p in report.practices)
    sections = [
        f"<h1>Exposure report: {escape(who)}</h1><p>{escape(period)} (end excluded)</p>",
        '<div class="summary">'
        + "".join(
            f"<div><strong>{value}</strong>{escape(label)}</div>"
            for value, label in (
                (len(report.patients), "patients"),
                (appointments, "appointments"),
                (len(report.practices), "practices"),
                (len(alerts), "alerts"),
            )
        )
        + "</div>",
        "<h2>Patients shown per day</h2>",
        _columns_chart([(d.day.isoformat(), d.patients) for d in report.days], "patients-per-day"),
        "<h2>Patients shown per practice</h2>",
        _bars_chart([(p.practice, p.patients) for p in report.practices], "patients-per-practice"),
        "<h2>Field groups shown, per practice</h2>",
        _table(
            ["practice", "patients", "appointments", "field groups", *(f"with {g.name}" for g in COUNTED_GROUPS)],
            [
                [p.practice, p.patients, p.appointments, _groups(p.field_groups)]
                + [p.with_groups[g.name] for g in COUNTED_GROUPS]
                for p in report.practices
            ],
        ),
        "<h2>Alerts</h2>",
        _table(
            ["raised", "kind", "key", "practice", "window (h)", "patients", "refused", "threshold", "delivery"],
            [
                [
                    *(_when(a.raised_at), a.kind, a.key_prefix or "-", a.practice, a.window_hours),
                    *(a.patients_in_window, a.patients_refused, a.threshold, a.delivery),
                ]
                for a in alerts
            ],
        ),
        "<h2>Patients</h2>",
        _table(
            [
                *(["first name", "last name"] if with_names else []),
                *("patient", "practice", "field groups", "appointments", "requests", "first shown", "last shown"),
            ],
            [
                [
                    *([p.first_name or "", p.last_name or ""] if with_names else []),
                    *(p.patient_id, p.practice, _groups(p.field_groups), p.appointments, p.requests),
                    *(_when(p.first_disclosed), _when(p.last_disclosed)),
                ]
                for p in report.patients
            ],
        ),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">'
        f"<title>Exposure report: {escape(who)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _groups(bits: int) -> str:
    return ", ".join(group_names(bits))


def _table(header: list[str], rows: list[list[object]]) -> str:
    if not rows:
        return '<p class="none">None.</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{v}</td>' if isinstance(v, int) else f"<td>{escape(str(v))}</td>" for v in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _columns_chart(points: list[tuple[str, int]], name: str) -> str:
    """Vertical bars, one per day, the count above each, the date below every few bars."""
    if not points:
        return '<p class="none">No disclosure in this period.</p>'
    top = max(value for _, value in points)
    step = max(1, len(points) // 10)
    width = len(points) * (_BAR + _GAP) + 40
    bars = []
    for i, (label, value) in enumerate(points):
        x, height = 30 + i * (_BAR + _GAP), round(value / top * _HEIGHT) if top else 0
        y = 20 + _HEIGHT - height
        bars.append(
            f'<rect class="bar" x="{x}" y="{y}" width="{_BAR}" height="{height}"><title>{escape(label)}: {value}'
            f'</title></rect><text x="{x + _BAR / 2}" y="{y - 4}" text-anchor="middle">{value}</text>'
        )
        if i % step == 0:
            bars.append(f'<text x="{x}" y="{_HEIGHT + 36}">{escape(label[5:])}</text>')
    return (
        f'<svg id="{name}" role="img" width="{width}" height="{_HEIGHT + 50}" viewBox="0 0 {width} {_HEIGHT + 50}">'
        + "".join(bars)
        + "</svg>"
    )


def _bars_chart(points: list[tuple[str, int]], name: str) -> str:
    """Horizontal bars, one per practice, its name on the left and the count at the end."""
    if not points:
        return '<p class="none">No disclosure in this period.</p>'
    top = max(value for _, value in points)
    width, height = _LABEL + 460, len(points) * (_BAR + _GAP) + 10
    bars = []
    for i, (label, value) in enumerate(points):
        y, length = 5 + i * (_BAR + _GAP), round(value / top * 400) if top else 0
        bars.append(
            f'<text x="{_LABEL - 8}" y="{y + 13}" text-anchor="end">{escape(label[:40])}</text>'
            f'<rect class="bar" x="{_LABEL}" y="{y}" width="{length}" height="{_BAR}"><title>{escape(label)}: '
            f'{value}</title></rect><text x="{_LABEL + length + 6}" y="{y + 13}">{value}</text>'
        )
    return (
        f'<svg id="{name}" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        + "".join(bars)
        + "</svg>"
    )
