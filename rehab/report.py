"""The clinician's report of one processed video: a self-contained HTML page (and optionally a PDF).

Made only from what batch wrote (the summary dict as stored in summary.json and the frames table), so a
report can be rebuilt from an output folder. The HTML page has no external resources: plots are inline SVG,
the snapshot an inline JPEG, styles inline; it opens from a USB stick or an e-mail attachment. It links the
annotated video by its relative file name, which plays when the page sits in its output folder.

Every number shown comes from the summary or the frames table; nothing is measured here.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rehab.analysis.exercises import side_of
from rehab.core.angles import ANGLES_BY_NAME

# Longer signals are reduced to this many points per line (min and max of each bucket, so peaks survive):
# an hour at 30 fps would otherwise put 100,000 points in every plot.
MAX_PLOT_POINTS = 2000
PLOT_SIZE_IN = (9.0, 2.4)
PDF_PAGE_IN = (8.27, 11.69)  # A4 portrait
PDF_PLOTS_PER_PAGE = 5
PDF_REP_ROWS_PER_PAGE = 30
PDF_ROW_HEIGHT = 0.02  # of the page height
PDF_SNAPSHOT_HEIGHT = 0.35  # of the page height, at most
SIDE_COLOURS = {"left": "#1f77b4", "right": "#d62728"}
CENTRE_COLOUR = "#2ca02c"
REP_SHADE = "#f2c14e"
REP_SHADE_ALPHA = 0.25
REP_COLUMNS = (
    ("number", "#", "{:.0f}"), ("side", "side", "{}"), ("start_s", "start (s)", "{:.2f}"),
    ("end_s", "end (s)", "{:.2f}"), ("duration_s", "duration (s)", "{:.2f}"), ("min_deg", "min (°)", "{:.1f}"),
    ("max_deg", "max (°)", "{:.1f}"), ("span_deg", "range of motion (°)", "{:.1f}"),
    ("left_span_deg", "left ROM (°)", "{:.1f}"), ("right_span_deg", "right ROM (°)", "{:.1f}"),
    ("symmetry_difference_deg", "L−R (°)", "{:+.1f}"), ("symmetry_ratio", "symmetry", "{:.0%}"),
)
ANGLE_STAT_COLUMNS = (
    ("measured_fraction", "measured", "{:.0%}"), ("mean_deg", "mean (°)", "{:.1f}"), ("std_deg", "SD (°)", "{:.1f}"),
    ("min_deg", "min (°)", "{:.1f}"), ("median_deg", "median (°)", "{:.1f}"), ("max_deg", "max (°)", "{:.1f}"),
    ("p5_p95_range_deg", "P5–P95 range (°)", "{:.1f}"),
)


def _fmt(value: Any, pattern: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    try:
        return pattern.format(value)
    except (ValueError, TypeError):
        return str(value)


def angle_families(angle_names: Sequence[str], first: Sequence[str] = ()) -> list[tuple[str, list[str]]]:
    """Angles grouped by joint with the sides together: [("knee_flexion", [left_, right_]), ("trunk_lean", [...])].
    Families of ``first`` (the exercise's angles) come first."""
    families: dict[str, list[str]] = {}
    for name in angle_names:
        side = side_of(name)
        key = name[len(side) + 1:] if side in ("left", "right") else name
        families.setdefault(key, []).append(name)
    order = [k for k in dict.fromkeys(_family_of(a) for a in first) if k in families]
    order += [k for k in families if k not in order]
    return [(k, families[k]) for k in order]


def _family_of(angle: str) -> str:
    side = side_of(angle)
    return angle[len(side) + 1:] if side in ("left", "right") else angle


def decimate(t: np.ndarray, y: np.ndarray, max_points: int = MAX_PLOT_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points: the min and the max of each of max_points / 2 buckets, in time order."""
    n = len(t)
    if n <= max_points:
        return t, y
    buckets = max(1, max_points // 2)
    edges = np.linspace(0, n, buckets + 1).astype(int)
    ts, ys = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        seg = y[a:b]
        if not np.isfinite(seg).any():
            ts += [t[a]]
            ys += [math.nan]
            continue
        i, j = sorted((int(np.nanargmin(seg)), int(np.nanargmax(seg))))
        ts += [t[a + i], t[a + j]]
        ys += [seg[i], seg[j]]
    return np.asarray(ts), np.asarray(ys)


def _title(name: str) -> str:
    return name.replace("_", " ").capitalize()


def _plot_family(ax, family: str, angles: Sequence[str], frames: pd.DataFrame, summary: Mapping[str, Any]) -> None:
    t = frames["time_s"].to_numpy(dtype=np.float64)
    exercise = summary.get("exercise") or {}
    primary = set(exercise.get("angles") or ())
    drawn = False
    for angle in angles:
        y = frames[f"{angle}_deg"].to_numpy(dtype=np.float64)
        if not np.isfinite(y).any():
            continue
        tt, yy = decimate(t, y)
        side = side_of(angle)
        # Small markers: a sample between two unmeasured frames has no line segment and would not show.
        ax.plot(tt, yy, lw=1.2, marker="o", markersize=1.5, color=SIDE_COLOURS.get(side, CENTRE_COLOUR),
                label=side if side in SIDE_COLOURS else _title(angle))
        drawn = True
    if primary & set(angles):
        for rep in summary.get("repetitions") or ():
            if rep.get("start_s") is not None and rep.get("end_s") is not None:
                ax.axvspan(rep["start_s"], rep["end_s"], color=REP_SHADE, alpha=REP_SHADE_ALPHA, lw=0)
        for key, label in (("enter_deg", "counts past"), ("exit_deg", "rest within")):
            if exercise.get(key) is not None:
                ax.axhline(exercise[key], color="grey", lw=0.8, ls="--")
                ax.annotate(f"{label} {exercise[key]:.0f}°", (1.0, exercise[key]), xycoords=("axes fraction", "data"),
                            ha="right", va="bottom", fontsize=7, color="grey")
    if not drawn:
        ax.text(0.5, 0.5, "not measured (joints not seen reliably)", ha="center", va="center",
                transform=ax.transAxes, color="grey")
    ax.set_title(_title(family), loc="left", fontsize=10)
    ax.set_ylabel("degrees")
    ax.set_xlabel("time (s)")
    ax.grid(True, lw=0.3, alpha=0.5)
    if drawn:
        ax.legend(loc="upper right", fontsize=7, frameon=False, ncol=2)
    if len(t):
        ax.set_xlim(float(t[0]), float(t[-1]) if t[-1] > t[0] else float(t[0]) + 1.0)


def angle_plot_svg(family: str, angles: Sequence[str], frames: pd.DataFrame, summary: Mapping[str, Any]) -> str:
    """One angle family over time as an inline <svg> element (text kept as text, ids deterministic)."""
    import matplotlib
    from matplotlib.figure import Figure

    fig = Figure(figsize=PLOT_SIZE_IN, layout="constrained")
    _plot_family(fig.subplots(), family, angles, frames, summary)
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "rehab-report"}):
        # No RDF metadata block: it names web addresses (harmless, but the page should have none).
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    return svg[svg.index("<svg"):]


def _key_numbers(summary: Mapping[str, Any]) -> list[tuple[str, str]]:
    proc = summary.get("processing") or {}
    numbers: list[tuple[str, str]] = []
    session = summary.get("session")
    exercise = summary.get("exercise")
    if exercise is not None:
        numbers.append(("Repetitions", str(session["count"] if session else 0)))
        for side in (session or {}).get("sides") or ():
            label = "" if side["side"] == "both" else f" ({side['side']})"
            numbers.append((f"Mean range of motion{label}", _fmt(side["mean_span_deg"], "{:.1f}°")))
            numbers.append((f"Best range of motion{label}", _fmt(side["best_span_deg"], "{:.1f}°")))
            numbers.append((f"Mean repetition time{label}", _fmt(side["mean_duration_s"], "{:.2f} s")))
        if session:
            numbers.append(("Symmetry (left − right)", _fmt(session.get("symmetry_difference_deg"), "{:+.1f}°")))
            numbers.append(("Symmetry ratio", _fmt(session.get("symmetry_ratio"), "{:.0%}")))
    numbers.append(("Time analysed", _fmt(proc.get("duration_s"), "{:.1f} s")))
    frames, with_pose = proc.get("frames", 0), proc.get("frames_with_pose", 0)
    numbers.append(("Frames with a pose", f"{with_pose} of {frames} ({_fmt(proc.get('pose_fraction'), '{:.0%}')})"))
    truncated = summary.get("truncated")
    if truncated:
        # Processed with --allow-truncated: the numbers cover only the part of the file that could be read.
        numbers.append(("Video file cut short", str(truncated.get("message", "truncated"))))
    return numbers


def _table(rows: Sequence[Mapping[str, Any]], columns, first: tuple[str, str] | None = None) -> str:
    present = [c for c in columns if any(c[0] in r for r in rows)]
    head = ([f"<th>{html.escape(first[1])}</th>"] if first else []) + [f"<th>{html.escape(c[1])}</th>" for c in present]
    body = []
    for r in rows:
        cells = [f"<th>{html.escape(str(r.get(first[0], '')))}</th>"] if first else []
        cells += [f"<td>{html.escape(_fmt(r.get(c[0]), c[2]))}</td>" for c in present]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{''.join(head)}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1000px;padding:1.5em;
color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:0.2em}h2{font-size:1.15em;margin-top:1.8em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0}
.cards{display:flex;flex-wrap:wrap;gap:0.6em}.card{border:1px solid #ddd;border-radius:6px;padding:0.5em 0.8em;
min-width:10em}.card .v{font-size:1.4em;font-weight:600}.card .k{color:#666;font-size:0.85em}
table{border-collapse:collapse;font-size:0.9em;margin:0.5em 0}th,td{border:1px solid #ddd;padding:0.25em 0.6em;
text-align:right}thead th{background:#f5f5f5}tbody th{text-align:left;font-weight:normal}
.media{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}.media img,.media video{max-width:100%;max-height:420px;
border:1px solid #ddd}
svg{max-width:100%;height:auto}pre{background:#f7f7f7;padding:0.8em;overflow:auto;font-size:0.8em}
.note{color:#666;font-size:0.85em}
@media print{.media video{display:none}}
"""


def render_html(summary: Mapping[str, Any], frames: pd.DataFrame, snapshot_jpeg: bytes | None = None,
                video_file: str | None = "annotated.mp4") -> str:
    """The report page as one HTML string with everything inline."""
    import json

    esc = html.escape
    name = summary.get("name") or (summary.get("source") or {}).get("file_name", "video")
    source = summary.get("source") or {}
    proc = summary.get("processing") or {}
    exercise = summary.get("exercise")
    model = summary.get("model") or {}
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Session report – {esc(str(name))}</title><style>{_CSS}</style></head><body>",
        f"<h1>Session report: {esc(str(name))}</h1>",
        f'<p class="sub">{esc(exercise["title"]) if exercise else "No exercise selected: joint angles only"} · '
        f'recording {esc(str(source.get("file_name", "")))} · processed {esc(str(summary.get("created_at", "")))}</p>',
        "<h2>Key numbers</h2>", '<div class="cards">',
    ]
    parts += [f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>'
              for k, v in _key_numbers(summary)]
    parts.append("</div>")
    if exercise is None:
        parts.append('<p class="note">Repetitions are counted when the video is processed with an exercise '
                     "(rehab process ... --exercise NAME; rehab exercises lists them).</p>")

    # The snapshot is the video's poster: it shows where the video cannot play (page moved alone, printed).
    poster = f"data:image/jpeg;base64,{base64.b64encode(snapshot_jpeg).decode('ascii')}" if snapshot_jpeg else ""
    if video_file:
        parts += ["<h2>Recording (anonymised)</h2>",
                  f'<div class="media"><video controls preload="none" poster="{poster}" src="{esc(video_file)}">'
                  "</video></div>",
                  f'<p class="note">The video plays when this page is next to {esc(video_file)}.</p>']
    elif poster:
        parts += ["<h2>Recording (anonymised)</h2>",
                  f'<div class="media"><img alt="anonymised frame of the recording" src="{poster}"></div>']

    angle_names = [c[:-4] for c in frames.columns if c.endswith("_deg")]
    parts.append("<h2>Joint angles over time</h2>")
    if exercise is not None:
        parts.append('<p class="note">Shaded: counted repetitions. Dashed: the exercise\'s thresholds.</p>')
    for family, angles in angle_families(angle_names, first=(exercise or {}).get("angles") or ()):
        parts.append(angle_plot_svg(family, angles, frames, summary))

    reps = summary.get("repetitions") or []
    if exercise is not None:
        parts.append(f"<h2>Repetitions ({len(reps)})</h2>")
        parts.append(_table(reps, REP_COLUMNS) if reps else "<p>No repetition was counted.</p>")

    stats = summary.get("angles") or {}
    parts.append("<h2>Angle statistics</h2>")
    parts.append(_table([{"angle": _title(a), **s} for a, s in stats.items()], ANGLE_STAT_COLUMNS,
                        first=("angle", "angle")))
    parts.append('<p class="note">' + "<br>".join(
        f"<b>{esc(_title(a))}</b>: {esc(ANGLES_BY_NAME[a].description)}" for a in stats if a in ANGLES_BY_NAME
        and ANGLES_BY_NAME[a].description) + "</p>")

    parts += [
        "<h2>How this was measured</h2>",
        f"<p>Model <b>{esc(str(model.get('name', '?')))}</b> ({esc(str(model.get('precision', '')))}, "
        f"SHA-256 {esc(str(model.get('sha256', ''))[:12])}…); {proc.get('frames', 0)} frames at "
        f"{_fmt(proc.get('output_fps'), '{:.1f}')} fps, {proc.get('frame_width', 0)}×{proc.get('frame_height', 0)} px; "
        f"source {source.get('width', 0)}×{source.get('height', 0)} {esc(str(source.get('codec', '')))}, "
        f"SHA-256 {esc(str(source.get('sha256', ''))[:12])}…. Angles in the image plane (2-D): a joint seen "
        "reliably in the frame but moving towards the camera shows a smaller angle than it has.</p>",
        "<details><summary>Settings and model metadata</summary><pre>",
        esc(json.dumps({"options": summary.get("options"), "model": model}, indent=2)),
        "</pre></details>", "</body></html>",
    ]
    return "\n".join(parts)


def write_html(path: str | os.PathLike[str], summary: Mapping[str, Any], frames: pd.DataFrame,
               snapshot_jpeg: bytes | None = None, video_file: str | None = "annotated.mp4") -> Path:
    path = Path(path)
    path.write_text(render_html(summary, frames, snapshot_jpeg, video_file), encoding="utf-8")
    return path


def write_pdf(path: str | os.PathLike[str], summary: Mapping[str, Any], frames: pd.DataFrame,
              snapshot_jpeg: bytes | None = None) -> Path:
    """The same report as a printable A4 PDF: key numbers, snapshot and repetitions, then the angle plots."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    path = Path(path)
    name = str(summary.get("name") or "video")
    exercise = summary.get("exercise")
    reps = summary.get("repetitions") or []
    rep_cols = [c for c in REP_COLUMNS if any(c[0] in r for r in reps)]
    angle_names = [c[:-4] for c in frames.columns if c.endswith("_deg")]
    families = angle_families(angle_names, first=(exercise or {}).get("angles") or ())
    with PdfPages(path, metadata={"Title": f"Session report: {name}", "Creator": "rehab", "CreationDate": None}) as pdf:
        fig = Figure(figsize=PDF_PAGE_IN)
        fig.text(0.07, 0.95, f"Session report: {name}", fontsize=16, weight="bold")
        sub = exercise["title"] if exercise else "No exercise selected: joint angles only"
        fig.text(0.07, 0.925, f"{sub} · {(summary.get('source') or {}).get('file_name', '')}", fontsize=9, color="#555")
        y = 0.89
        for key, value in _key_numbers(summary):
            fig.text(0.07, y, key, fontsize=10)
            fig.text(0.55, y, value, fontsize=10, weight="bold")
            y -= 0.022
        if snapshot_jpeg:
            y = _pdf_snapshot(fig, snapshot_jpeg, top=y - 0.01)
        first_page_rows = reps[:PDF_REP_ROWS_PER_PAGE // 2]
        _pdf_rep_table(fig, first_page_rows, rep_cols, top=y - 0.02)
        pdf.savefig(fig)
        for start in range(len(first_page_rows), len(reps), PDF_REP_ROWS_PER_PAGE):
            fig = Figure(figsize=PDF_PAGE_IN)
            _pdf_rep_table(fig, reps[start:start + PDF_REP_ROWS_PER_PAGE], rep_cols, top=0.95)
            pdf.savefig(fig)
        for start in range(0, len(families), PDF_PLOTS_PER_PAGE):
            fig = Figure(figsize=PDF_PAGE_IN, layout="constrained")
            chunk = families[start:start + PDF_PLOTS_PER_PAGE]
            axes = fig.subplots(PDF_PLOTS_PER_PAGE, 1, squeeze=False)[:, 0]
            for ax, (family, angles) in zip(axes, chunk):
                _plot_family(ax, family, angles, frames, summary)
            for ax in axes[len(chunk):]:
                ax.set_axis_off()
            pdf.savefig(fig)
    return path


def _pdf_snapshot(fig, snapshot_jpeg: bytes, top: float) -> float:
    """Place the anonymised snapshot under the key numbers; returns the height left free below it."""
    import cv2

    image = cv2.imdecode(np.frombuffer(snapshot_jpeg, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        return top
    h, w = image.shape[:2]
    fig_w, fig_h = fig.get_size_inches()
    height = PDF_SNAPSHOT_HEIGHT
    width = min(0.86, height * fig_h / fig_w * w / h)
    height = width * fig_w / fig_h * h / w
    ax = fig.add_axes((0.07, top - height, width, height))
    ax.imshow(image[:, :, ::-1])
    ax.set_axis_off()
    return top - height - 0.01


def _pdf_rep_table(fig, rows: Sequence[Mapping[str, Any]], cols, top: float) -> None:
    if not rows or not cols:
        return
    height = min(top - 0.05, PDF_ROW_HEIGHT * (len(rows) + 2))
    ax = fig.add_axes((0.05, top - height, 0.9, height))
    ax.set_axis_off()
    # Headers on two lines ("range of motion" / "(°)") so that they fit their columns.
    table = ax.table(cellText=[[_fmt(r.get(c[0]), c[2]) for c in cols] for r in rows],
                     colLabels=[c[1].replace("range of motion", "ROM").replace(" (", "\n(") for c in cols], loc="upper center", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    for (row, _), cell in table.get_celld().items():
        cell.set_height(PDF_ROW_HEIGHT * 2 / height if row == 0 else PDF_ROW_HEIGHT / height)
