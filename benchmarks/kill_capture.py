"""SIGKILL the whole camera agent (`escrow capture CLIP --vault-url URL`) at >= 20 random
points against a real vault (`escrow serve`), restarting the same capture after each: kills
done, records lost, duplicated, orphan processes, wall time.

    .venv/bin/python benchmarks/kill_capture.py [--kills 20] [--seed 26]
        [--database sqlite|postgresql+psycopg://postgres@127.0.0.1:5432/agentkill_bench]

Each restart imports torch and loads the models again (~10 s on this 2-core machine), so
the suite's test (`tests/test_kill.py`) runs the same code with fewer kills; this is the
issue's full count. A PostgreSQL database named here is migrated down and up first and
back down at the end: give one of its own.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.killcapture: the code the suite's test runs too

from escrow.settings import get_settings  # noqa: E402
from tests.killcapture import GRACE_S, clean_capture, make_world, run_kills  # noqa: E402
from vault.db import downgrade, upgrade  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=26)
    ap.add_argument("--database", default="sqlite", help="sqlite, or a PostgreSQL URL")
    ap.add_argument("--grace", type=float, default=GRACE_S, help="s a child may outlive")
    ap.add_argument(
        "--clip", type=Path, default=Path(get_settings().data_dir) / "video" / "arcade-1080p.mp4"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kill-capture-") as tmp:
        root = Path(tmp)
        (root / "clean").mkdir()
        (root / "killed").mkdir()
        url = args.database
        if url == "sqlite":
            url = f"sqlite:///{root / 'vault.db'}"
        else:
            downgrade(url, "base")  # a run that died half-way
        upgrade(url)
        try:
            clean = clean_capture(root / "clean", args.clip)
            print(f"clean capture: {len(clean)} records", flush=True)
            world = make_world(root / "killed", url, args.clip)
            report = run_kills(
                world, clean, args.kills, args.seed, args.grace, lambda m: print(m, flush=True)
            )
        finally:
            if not url.startswith("sqlite"):
                downgrade(url, "base")
    print(f"kills done: {report.kills} (of {len(report.rounds)} rounds)")
    print(f"lost: {len(report.lost)} {sorted(report.lost)}")
    print(f"missing at the end: {len(report.missing)} {sorted(report.missing)}")
    print(f"extra (not of the clean run): {len(report.extra)} {sorted(report.extra)}")
    print(f"duplicated: {len(report.duplicated)} {report.duplicated}")
    print(f"orphans: {len(report.orphans)} {report.orphans}")
    children = [r for r in report.rounds if r.killed and r.children]
    slowest = max((r.child_exit_s for r in report.rounds), default=0.0)
    print(
        f"kills with child processes alive: {len(children)}; the slowest to end after its "
        f"parent's death: {slowest:.2f} s"
    )
    print(f"outbox left: {report.outbox_left}; audit trail verifies: {report.audit_ok}")
    print(f"wall time: {report.wall_s:.0f} s")
    ok = (
        report.kills >= args.kills
        and not (report.lost or report.missing or report.extra or report.duplicated)
        and not report.orphans
        and report.outbox_left == 0
        and report.audit_ok
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
