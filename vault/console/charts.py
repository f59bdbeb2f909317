"""Charts drawn on the server as SVG (matplotlib), served as images of the console's own
origin: counts and times only, never a crop. Each function returns the SVG text.

Figures are made with matplotlib.figure.Figure, never pyplot: pyplot keeps global state, and
the server draws the retention page's four charts at once in its thread pool."""

from __future__ import annotations

import io
from datetime import datetime

import matplotlib
import matplotlib.dates as mdates
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

matplotlib.rcParams.update({"svg.hashsalt": "keyframe-escrow", "font.size": 9})
COLOURS = ["#2b6cb0", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#718096"]


def _svg(fig) -> str:
    for ax in fig.axes:  # counts: whole numbers, from zero
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 1))
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buf.getvalue()


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def stacked_bars(title: str, labels: list[str], series: dict[str, list[int]], ylabel: str) -> str:
    """One bar per label, stacked by series (e.g. records per age bucket, by camera)."""
    fig = Figure(figsize=(6, 2.8))
    ax = fig.subplots()
    bottom = [0] * len(labels)
    for i, (name, values) in enumerate(series.items()):
        ax.bar(labels, values, bottom=bottom, label=name, color=COLOURS[i % len(COLOURS)])
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    if not series:
        _empty(ax, "records")
    else:
        ax.legend(fontsize=8, frameon=False)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    return _svg(fig)


def bars(title: str, labels: list[str], values: list[float], ylabel: str) -> str:
    fig = Figure(figsize=(6, 2.6))
    ax = fig.subplots()
    if labels:
        ax.bar(labels, values, color=COLOURS[0])
        ax.tick_params(axis="x", labelrotation=45)
    else:
        _empty(ax, "data")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    return _svg(fig)


def timeline(
    title: str,
    edges: list[datetime],
    counts: dict[str, list[int]],
    scope: tuple[datetime, datetime],
) -> str:
    """Records per time bin and camera, the warrant's scope shaded."""
    fig = Figure(figsize=(7, 2.8))
    ax = fig.subplots()
    width = (edges[1] - edges[0]) if len(edges) > 1 else None
    bottom = [0] * len(edges)
    for i, (cam, values) in enumerate(counts.items()):
        ax.bar(
            edges,
            values,
            width=width,
            bottom=bottom,
            align="edge",
            label=cam,
            color=COLOURS[i % len(COLOURS)],
        )
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.axvspan(scope[0], scope[1], color="#fefcbf", label="scope", zorder=0)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M"))
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_ylabel("records")
    ax.set_title(title)
    ax.legend(fontsize=8, frameon=False)
    return _svg(fig)
