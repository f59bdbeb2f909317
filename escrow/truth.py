"""Score a capture against a hand-labelled ground truth of faces (MOT Challenge format).

The truth file (e.g. tests/data/arcade-1080p.gt.txt) holds one line per visible face:
`frame,person_id,x,y,w,h,1,-1,-1,-1`, frame 1-based, box in full-resolution pixels; lines
starting with `#` are comments. `load_mot` turns it into {0-based frame index: [(person id,
(x1, y1, x2, y2))]}, the frame index the project's Source yields.

`score_capture` takes what a capture showed: the detections assigned to tracks on each frame
(what CaptureAgent's on_frame callback sees) and the sealed records (track id, best frame,
box). It measures "one crop per person" (records per person, duplicates, persons missed),
"records are faces" (precision of records, recall of eligible persons) and tracking quality
(ID switches and fragmentations from py-motmetrics, tracks per person).

Only the standard library and numpy are imported at module level; motmetrics (which brings
pandas) is imported inside `score_capture`.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from escrow.boxes import Box, iou  # noqa: F401 (iou: part of this module's surface)

Truth = dict[int, list[tuple[int, Box]]]


def load_mot(path: str | Path) -> Truth:
    """{0-based frame index: [(person id, (x1, y1, x2, y2))]} from a MOT ground-truth file.
    Lines whose 7th field (`conf`/consider flag) is 0 are left out, as MOT does."""
    truth: Truth = defaultdict(list)
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        f = line.split(",")
        if len(f) < 6:
            raise ValueError(f"{path}:{n}: expected frame,id,x,y,w,h,... got {line!r}")
        frame, pid = int(f[0]), int(f[1])
        x, y, w, h = (float(v) for v in f[2:6])
        if len(f) > 6 and float(f[6]) == 0:
            continue
        if frame < 1:
            raise ValueError(f"{path}:{n}: MOT frames are 1-based, got {frame}")
        truth[frame - 1].append((pid, (x, y, x + w, y + h)))
    return dict(sorted(truth.items()))


def write_mot(truth: Truth, path: str | Path, header: Sequence[str] = ()) -> None:
    """The inverse of load_mot (boxes rounded to 0.1 px), lines sorted by frame then id."""
    lines = [f"# {h}" for h in header]
    for i in sorted(truth):
        for pid, (x1, y1, x2, y2) in sorted(truth[i]):
            lines.append(f"{i + 1},{pid},{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},1,-1,-1,-1")
    Path(path).write_text("\n".join(lines) + "\n")


def persons(truth: Truth) -> set[int]:
    return {pid for faces in truth.values() for pid, _ in faces}


def faces_on(truth: Truth, frame_index: int) -> list[tuple[int, Box]]:
    """The labelled faces (person id, box) on a 0-based frame index ([] if none)."""
    return list(truth.get(frame_index, []))


def iou_matrix(objs: Sequence[Box], hyps: Sequence[Box]) -> np.ndarray:
    """IoU of every (truth, hypothesis) pair (motmetrics 1.4's own helper needs numpy < 2)."""
    m = np.zeros((len(objs), len(hyps)))
    for i, o in enumerate(objs):
        for j, h in enumerate(hyps):
            m[i, j] = iou(o, h)
    return m


def coverage(box: Box, covers: Iterable[Box]) -> float:
    """Fraction of `box`'s area inside the union of `covers` (e.g. the boxes a preview
    pixelated on a frame): 1.0 when the face region is wholly covered."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    w, h = x2 - x1, y2 - y1
    if w <= 0 or h <= 0:
        return 1.0
    mask = np.zeros((h, w), bool)
    for c in covers:
        cx1, cy1 = max(0, int(round(c[0])) - x1), max(0, int(round(c[1])) - y1)
        cx2, cy2 = min(w, int(round(c[2])) - x1), min(h, int(round(c[3])) - y1)
        if cx2 > cx1 and cy2 > cy1:
            mask[cy1:cy2, cx1:cx2] = True
    return float(mask.mean())


def preview_exposure(
    pixelated: dict[int, list[Box]], truth: Truth, covered: float = 0.8, clear: float = 0.5
) -> dict:
    """How well a preview hid the labelled faces: `pixelated` holds the boxes it pixelated on
    each frame index. A face is hidden when at least `covered` of its box is pixelated, and
    in clear when less than `clear` is (the labelled boxes are a few pixels from the
    detector's, so a detected face's mosaic may leave a rim of its labelled box)."""
    hidden = partly = 0
    in_clear: dict[int, list[int]] = defaultdict(list)  # person -> frame indices
    for i, faces in truth.items():
        for pid, box in faces:
            c = coverage(box, pixelated.get(i, []))
            if c >= covered:
                hidden += 1
            elif c >= clear:
                partly += 1
            else:
                in_clear[pid].append(i)
    n = sum(len(f) for f in truth.values())
    return {
        "faces": n,
        "hidden": hidden,
        "partly": partly,
        "in_clear": sum(len(v) for v in in_clear.values()),
        "in_clear_frames": {p: sorted(v) for p, v in sorted(in_clear.items())},
    }


def _match(objs: Sequence[Box], hyps: Sequence[Box], thr: float) -> list[tuple[int, int]]:
    """One-to-one (truth index, hypothesis index) pairs maximising IoU, each IoU >= thr."""
    if not objs or not hyps:
        return []
    from scipy.optimize import linear_sum_assignment

    m = iou_matrix(objs, hyps)
    rows, cols = linear_sum_assignment(-m)
    return [(r, c) for r, c in zip(rows, cols, strict=True) if m[r, c] >= thr]


def score_capture(
    assignments: Iterable[tuple[int, int, Box]],
    records: Iterable[tuple[int, int, Box]],
    truth: Truth,
    min_track: int = 3,
    iou: float = 0.3,
) -> dict:
    """Score a capture against the truth.

    assignments: (frame index, track id, box) of every detection the capture assigned to a
    track; records: (track id, best frame index, box) of every sealed record.

    A person is *eligible* when detections match their labelled face (IoU >= `iou`) on at
    least `min_track` frames: the capture could have made a record of them. A record belongs
    to the labelled face its box matches on its best frame; a record matching none is not a
    face. ID switches and fragmentations are py-motmetrics' (CLEAR MOT), on every frame that
    has a label or a detection.
    """
    import motmetrics as mm

    thr = iou
    by_frame: dict[int, list[tuple[int, Box]]] = defaultdict(list)
    for i, tid, box in assignments:
        by_frame[int(i)].append((int(tid), tuple(float(v) for v in box)))
    everyone = persons(truth)
    acc = mm.MOTAccumulator(auto_id=False)
    detected_frames: Counter[int] = Counter()  # person -> frames a detection matched them
    tracks_of: dict[int, set[int]] = defaultdict(set)  # person -> track ids matched to them
    for i in sorted(set(truth) | set(by_frame)):
        objs, hyps = truth.get(i, []), by_frame.get(i, [])
        m = iou_matrix([b for _, b in objs], [b for _, b in hyps])
        dist = np.where(m >= thr, 1.0 - m, np.nan)
        acc.update([p for p, _ in objs], [t for t, _ in hyps], dist, frameid=i)
        for r, c in _match([b for _, b in objs], [b for _, b in hyps], thr):
            detected_frames[objs[r][0]] += 1
            tracks_of[objs[r][0]].add(hyps[c][0])
    mh = mm.metrics.create()
    mot = mh.compute(
        acc,
        metrics=["num_switches", "num_fragmentations", "mota", "idf1", "num_false_positives"],
        name="capture",
    ).iloc[0]

    eligible = {p for p in everyone if detected_frames[p] >= min_track}
    records = [(int(t), int(i), tuple(float(v) for v in b)) for t, i, b in records]
    per_person: Counter[int] = Counter()
    non_faces: list[tuple[int, int]] = []  # (track id, best frame) of records matching no face
    record_person: list[tuple[int, int, int | None]] = []  # (track id, best frame, person)
    for tid, i, box in records:
        faces = truth.get(i, [])
        best = max(faces, key=lambda f: _iou(f[1], box), default=None)
        if best is None or _iou(best[1], box) < thr:
            non_faces.append((tid, i))
            record_person.append((tid, i, None))
        else:
            per_person[best[0]] += 1
            record_person.append((tid, i, best[0]))
    hist = Counter(per_person[p] for p in eligible)
    n_rec = len(records)
    return {
        "persons": len(everyone),
        "eligible": len(eligible),
        "records": n_rec,
        "face_records": n_rec - len(non_faces),
        "non_face_records": len(non_faces),
        "non_face": non_faces,
        "precision": (n_rec - len(non_faces)) / n_rec if n_rec else 1.0,
        "recall": (sum(1 for p in eligible if per_person[p]) / len(eligible)) if eligible else 1.0,
        "records_per_person": dict(sorted(hist.items())),  # records -> eligible persons
        "exactly_one": sum(1 for p in eligible if per_person[p] == 1),
        "none": sum(1 for p in eligible if per_person[p] == 0),
        "duplicates": sum(max(0, n - 1) for n in per_person.values()),
        "records_of": {p: per_person[p] for p in sorted(everyone)},
        "record_person": record_person,
        "tracks_per_person": {p: len(tracks_of[p]) for p in sorted(eligible)},
        "tracks_of": {p: sorted(tracks_of[p]) for p in sorted(everyone) if tracks_of[p]},
        "extra_tracks": sum(max(0, len(tracks_of[p]) - 1) for p in eligible),
        "id_switches": int(mot["num_switches"]),
        "fragmentations": int(mot["num_fragmentations"]),
        "false_positive_detections": int(mot["num_false_positives"]),
        "mota": float(mot["mota"]),
        "idf1": float(mot["idf1"]),
    }


_iou = iou  # score_capture's `iou` argument shadows the function inside it
