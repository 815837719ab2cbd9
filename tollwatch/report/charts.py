"""Charts as PNG bytes, drawn with matplotlib's Agg backend (no display, no pyplot state)."""

from __future__ import annotations

import io
from datetime import date

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

COLORS = {
    "domestic": "#4c78a8",
    "international": "#f58518",
    "high-risk": "#d62728",
    "other": "#b0b0b0",
}
WIDTH_IN, HEIGHT_IN, DPI = 8.0, 3.6, 100


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def hourly_chart(hourly: dict[tuple[int, str], int], title: str) -> bytes:
    """Stacked bars: calls per local hour by class (domestic, international, high-risk)."""
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN), layout="constrained")
    ax = fig.add_subplot()
    hours = list(range(24))
    bottom = [0] * 24
    kinds = [k for k in COLORS if k != "other" or any(h[1] == "other" for h in hourly)]
    for kind in kinds:
        values = [hourly.get((h, kind), 0) for h in hours]
        ax.bar(hours, values, bottom=bottom, color=COLORS[kind], label=kind, width=0.85)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(range(0, 24, 2))
    ax.set_xlim(-0.6, 23.6)
    ax.set_xlabel("hour (site time)")
    ax.set_ylabel("outbound calls")
    ax.set_title(title, fontsize=11)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    if not any(bottom):
        ax.set_ylim(0, 1)
        ax.text(11.5, 0.5, "no calls", ha="center", va="center", color="#777777")
    return _png(fig)


def daily_chart(days: list[tuple[date, int | None, int | None]], title: str) -> bytes:
    """Bars per day: outbound calls, and international calls on a second scale. A day without
    any CDR (None) is drawn as a grey × on the axis, never as a 0 bar."""
    fig = Figure(figsize=(WIDTH_IN, HEIGHT_IN * 0.8), layout="constrained")
    ax = fig.add_subplot()
    labels = [d.strftime("%a\n%m-%d") for d, _, _ in days]
    x = list(range(len(days)))
    ax.bar(x, [c or 0 for _, c, _ in days], color=COLORS["domestic"], label="outbound calls")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("outbound calls")
    missing = [i for i, (_, c, _) in enumerate(days) if c is None]
    if missing:
        ax.plot(missing, [0] * len(missing), linestyle="none", marker="x", markersize=10,
                color="#777777", label="no CDRs (missing)", clip_on=False)
    twin = ax.twinx()
    twin.plot(x, [float("nan") if i is None else i for _, _, i in days],
              color=COLORS["international"], marker="o", label="international")
    twin.set_ylabel("international")
    twin.set_ylim(bottom=0)
    ax.set_title(title, fontsize=11)
    handles = ax.get_legend_handles_labels()
    more = twin.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], loc="upper left", fontsize=8,
              frameon=False)
    return _png(fig)
