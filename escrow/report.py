"""Per-track quality over time, for operators: JSON per track and one plot of all tracks
(like the paper's Figure 8). Numbers only: no face imagery ever goes into a report."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(histories: dict[int, list[tuple[int, float, float]]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(9, 4))
    for tid, pts in sorted(histories.items()):
        rows = [{"frame": f, "time": t, "quality": q} for f, t, q in pts]
        best = max(rows, key=lambda r: r["quality"])
        (out / f"track-{tid:04d}.json").write_text(
            json.dumps({"track_id": tid, "best": best, "points": rows}, indent=1)
        )
        ax.plot([r["frame"] for r in rows], [r["quality"] for r in rows], label=f"track {tid}")
        ax.plot([best["frame"]], [best["quality"]], "k*")
    ax.set_xlabel("frame")
    ax.set_ylabel("quality (log reconstruction probability)")
    ax.set_title("Face quality per track (* = the crop that was sealed)")
    if len(histories) <= 15:
        ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "quality.png", dpi=100)
    plt.close(fig)
