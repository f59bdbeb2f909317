"""What `escrow erc` writes: one PNG ERC plot per initial FNMR f (like the paper's Figures 5
and 6), a CSV of every curve, and summary.json."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from vae.erc.curve import PERFECT, R_GRID, RANDOM

# Fixed colours so that plots of different runs read the same way.
STYLE = {
    "VAE": dict(color="tab:red", lw=2.4),
    "VAE log RP": dict(color="tab:orange", lw=1.4, ls="--"),
    RANDOM: dict(color="0.45", lw=1.6, ls=":"),
    PERFECT: dict(color="black", lw=1.4, ls="--"),
    "detector": dict(color="tab:blue", lw=1.3),
    "face size": dict(color="tab:green", lw=1.3),
    "sharpness": dict(color="tab:purple", lw=1.3),
    "exposure": dict(color="tab:brown", lw=1.3),
    "BRISQUE": dict(color="tab:cyan", lw=1.3),
}


def f_label(f: float) -> str:
    return f"{f:g}"


def plot_erc(
    path: Path,
    curves: Mapping[str, np.ndarray],
    areas: Mapping[str, float],
    f: float,
    title: str,
    r_grid: np.ndarray = R_GRID,
) -> None:
    """FNMR against the fraction of probes rejected; legend sorted by ERC area."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.2, 4.8))
    for name in sorted(curves, key=lambda m: areas[m]):
        ax.plot(
            r_grid,
            curves[name],
            label=f"{name} (area {areas[name]:.4f})",
            **STYLE.get(name, dict(lw=1.3)),
        )
    ax.axvline(0.3, color="0.8", lw=0.8, zorder=0)
    ax.set_xlim(0, float(r_grid[-1]))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("fraction of probes rejected (lowest quality first)")
    ax.set_ylabel("FNMR")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="area = mean FNMR, r in [0, 0.3]", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_curves_csv(
    path: Path,
    per_f: Mapping[float, tuple[float, Mapping[str, np.ndarray]]],
    r_grid: np.ndarray = R_GRID,
) -> None:
    """Long format: method, f, threshold, r, fnmr."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "f", "threshold", "rejected", "fnmr"])
        for f, (d_t, curves) in per_f.items():
            for name, curve in curves.items():
                for r, v in zip(r_grid, curve, strict=True):
                    w.writerow([name, f_label(f), f"{d_t:.6f}", f"{r:.3f}", f"{v:.6f}"])


def _json_safe(v):
    """NaN (an undefined ratio, e.g. the gap closed when random = PERFECT) -> null."""
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_json_safe(x) for x in v]
    return v


def write_summary(path: Path, summary: dict) -> None:
    path.write_text(json.dumps(_json_safe(summary), indent=2, allow_nan=False) + "\n")


def summary_table(summary: dict) -> str:
    """Markdown table of ERC areas (with 95% intervals) per method and f, best first."""
    fs = list(summary["results"])
    methods = summary["methods"]
    first = summary["results"][fs[0]]["methods"]
    rows = sorted(methods, key=lambda m: first[m]["area"])
    head = "| method | " + " | ".join(f"area at f = {f} [95% CI]" for f in fs) + " |"
    lines = [head, "|---|" + "---|" * len(fs)]
    for m in rows:
        cells = []
        for f in fs:
            r = summary["results"][f]["methods"][m]
            lo, hi = r["area_ci95"]
            cells.append(f"{r['area']:.4f} [{lo:.4f}, {hi:.4f}]")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def skin_tone_table(summary: dict) -> str:
    """Markdown table of whom each method rejects, per skin-tone band (vae/erc/skin_tone.py), at
    the largest f: the band's FNMR before rejection against the share of it rejected at
    r = 0.1 / 0.2."""
    bands = summary.get("by_skin_tone", {}).get("bands", [])
    if not bands:
        return ""
    f = max(summary["results"], key=float)
    methods = [m for m in summary["methods"] if m in bands[0]["rejected"]]
    head = f"| skin tone (ITA) | probes | FNMR at f = {f} | " + " | ".join(
        f"{m}: rejected at r = 0.1 / 0.2" for m in methods
    )
    lines = [head + " |", "|---|---|---|" + "---|" * len(methods)]
    for b in bands:
        cells = [f"{b['rejected'][m]['0.1']:.2f} / {b['rejected'][m]['0.2']:.2f}" for m in methods]
        lines.append(f"| {b['band']} | {b['probes']} | {b['fnmr'][f]:.3f} | {' | '.join(cells)} |")
    return "\n".join(lines)
