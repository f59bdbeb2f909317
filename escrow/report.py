"""Per-track quality over time, for operators: JSON per track and one plot of all tracks
(like the paper's Figure 8). Numbers only: no face imagery ever goes into a report.

Each track has its own colour; a star marks the crop that was sealed, only on tracks that
were sealed (a short track, or one without the evidence of a face, is drawn but has no
record). The VAE scores a crop only when it could beat its track's best so far, so a
track's line joins the crops that were scored.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_report(
    histories: dict[int, list[tuple[int, float, float]]],
    out: Path,
    sealed: dict[int, tuple[int, float]] | None = None,
) -> None:
    """histories: track -> (frame, time, quality) of its scored crops; sealed: track ->
    (frame, quality) of the crop sealed for it (None: every track's best is marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    colours = plt.get_cmap("tab20")
    for n, (tid, pts) in enumerate(sorted(histories.items())):
        rows = [{"frame": f, "time": t, "quality": q} for f, t, q in pts]
        best = max(rows, key=lambda r: r["quality"])
        was_sealed = sealed is None or tid in sealed
        (out / f"track-{tid:04d}.json").write_text(
            json.dumps(
                {"track_id": tid, "sealed": was_sealed, "best": best, "points": rows}, indent=1
            )
        )
        colour = colours(n % 20)
        ax.plot(
            [r["frame"] for r in rows],
            [r["quality"] for r in rows],
            color=colour,
            marker=".",
            ms=3,
            lw=1,
            label=f"track {tid}" + ("" if was_sealed else " (not sealed)"),
        )
        if was_sealed:
            frame, quality = sealed[tid] if sealed is not None else (best["frame"], best["quality"])
            ax.plot([frame], [quality], marker="*", ms=13, color=colour, mec="black", mew=0.8)
    ax.set_xlabel("frame of the video")
    ax.set_ylabel("face quality: log reconstruction probability (VAE, L = 10)")
    ax.set_title("Face quality per track (star: the crop sealed for the track)")
    if len(histories) <= 20:
        ax.legend(fontsize=7, ncol=4, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "quality.png", dpi=100)
    plt.close(fig)
