"""The capture loop: source -> detect -> track -> score -> keep best -> seal -> store.

Real time on a camera's CPU comes from spending the detector only where and when it is
needed (the `Schedule`): background subtraction finds what moves; the full detector scans the
moving regions a few times a second (new faces enter by moving); on every frame in between,
MTCNN's last stage alone re-finds each live face where the tracker's Kalman filter predicts
it. Decoding runs on a thread, detection on the loop's, and the VAE in a process of its own
(escrow.scoring), so the camera's two cores both work. The VAE spends its L samples on a
crop only when it could beat the track's best so far (`ScoreGate`), and a track is sealed
only if it shows evidence of being a face (`FaceEvidence`).

Plaintext face crops exist only in memory, between detection and sealing. A record id is
derived from the camera, the source and the track's first frame, so re-running the same
input after a crash reproduces the same ids and the idempotent store makes no duplicate.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np

from escrow import records, sealing
from escrow.boxes import iou, merge_boxes
from escrow.detect import FrameDetector
from escrow.heap import release_free_memory
from escrow.keyring import CameraKeyring, FreshKeyring
from escrow.motion import MotionGate
from escrow.scoring import Scoring, Where
from escrow.selection import BestCrops, Candidate, ClipBuffers
from escrow.sources import Frame, Source
from escrow.track import Track, Tracker
from vae.framing import CAPTURE_MARGIN

RECORD_NS = uuid.UUID("8f6c3c1e-2b1d-4f3e-9a53-6f1b2f0c9d11")
MAX_BATCH = 32  # crops gathered for a busy scorer before the loop waits for it
TRIM_SECONDS = 5.0  # how often the loop gives freed heap memory back (escrow.heap)


@dataclass
class Schedule:
    """Where and when the detector runs. `every_frame` is the reference pipeline (the whole
    frame, every frame: what the paper does, too slow for a live 1080p camera)."""

    every_frame: bool = False
    scan_interval: int = 8  # frames between scans of the moving regions for new faces
    track_interval: int = 1  # frames between re-detections around the live tracks
    idle_fps: float = 5.0  # a live source with nothing moving and no face: frames a second
    scoring: Where = "process"  # where the VAE runs (escrow.scoring): its own process
    refind_iou: float = 0.4  # a re-found face overlaps its predicted box at least this much
    whole_above: float = 0.5  # moving area (of the frame) above which a scan is one pass
    rescan_seconds: float = 2.0  # the whole frame at least this often, moving or not
    search_backoff: bool = True  # search for a lost face 1, 2, 4, 8... frames after seen

    @classmethod
    def reference(cls) -> Schedule:
        return cls(every_frame=True, scoring="inline")


@dataclass
class ScoreGate:
    """Spend the VAE's L latent samples only on a crop that can beat its track's best so far:
    a one-sample estimate first, the full score only within `slack` of the best
    (vae.score.QualityScorer.score_above). Measured on the street clip (benchmarks/capture.py)
    to keep every track's best crop."""

    enabled: bool = True
    slack: float | None = None  # nats; None: the scorer's measured default


@dataclass
class FaceEvidence:
    """What a track must show before it is sealed, beside detections in `min_track_frames`
    frames: a detector that was sure of it across its frames (the median score: MTCNN says
    >= 0.95 of most frames of a face, and wavers on a collar or a bowl), and a best crop the
    VAE does not rank far below any face. The VAE models a face's quality, it is no face
    classifier: textures such as grass score like a street face, so its floor is low
    (vae.score.NON_FACE_BELOW) and the detector's evidence does most of the work."""

    min_median_prob: float = 0.9
    min_quality: float | None = None  # None: no VAE floor (a scorer of other units)


@dataclass
class CaptureConfig:
    camera_id: str
    min_track_frames: int = 3
    lost_seconds: float = 0.5  # a track unseen this long has ended: it is sealed
    schedule: Schedule = field(default_factory=Schedule)
    gate: ScoreGate = field(default_factory=ScoreGate)
    evidence: FaceEvidence = field(default_factory=FaceEvidence)
    retention: timedelta = timedelta(hours=72)
    jpeg_quality: int = 95
    clip_seconds: float = 0.0  # also seal the track's crops this long around the best frame
    # every scored crop's quality per track, and the ids sealed, for the per-track report and
    # the demo's table: a camera that runs for days keeps neither (a few hundred MB a day of a
    # busy street)
    keep_histories: bool = True


@dataclass
class CaptureSummary:
    frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    tracks: int = 0
    records: int = 0
    dropped_short: int = 0
    dropped_not_face: int = 0  # tracks without the evidence of a face: never sealed
    faces_detected: int = 0
    detector_runs: int = 0  # frames the detector ran on (the rest: tracker prediction only)
    crops_scored: int = 0  # crops the VAE scored (the rest could not beat their best)
    record_ids: list[str] = field(default_factory=list)
    truncated: bool = False
    stopped: bool = False  # a stop was requested (SIGINT/SIGTERM): live tracks were sealed
    outbox: dict | None = None  # with a vault URL: sent, still waiting, refused
    keys_valid_until: str | None = None  # until when this camera can still seal
    skipped_frames: int | None = None  # live sources: frames dropped to stay current
    max_lag_s: float | None = None  # live sources: longest wait of a frame for its turn

    def public(self) -> dict:
        return {
            k: getattr(self, k)
            for k in (
                "frames",
                "seconds",
                "fps",
                "tracks",
                "records",
                "dropped_short",
                "dropped_not_face",
                "faces_detected",
                "detector_runs",
                "crops_scored",
                "keys_valid_until",
            )
        } | {
            k: getattr(self, k)
            for k in ("outbox", "skipped_frames", "max_lag_s")
            if getattr(self, k) is not None
        }


class CaptureAgent:
    def __init__(
        self,
        cfg: CaptureConfig,
        detector: FrameDetector,
        scorer,
        keyring: CameraKeyring | FreshKeyring,
        factory,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_frame: Callable[[Frame, list, CaptureSummary], None] | None = None,
        on_sealed: Callable[[str, dict], None] | None = None,
    ):
        self.cfg, self.detector, self.scorer = cfg, detector, scorer
        self.margin = getattr(detector, "margin", CAPTURE_MARGIN)
        self.keyring, self.factory, self.clock = keyring, factory, clock
        self.tracker = Tracker(lost_seconds=cfg.lost_seconds)
        self.best = BestCrops()
        self.on_frame, self.on_sealed = on_frame, on_sealed
        self.histories: dict[int, list[tuple[int, float, float]]] = {}  # frame, t, quality
        self.sealed: dict[int, tuple[int, float]] = {}  # track -> (frame, quality) sealed
        self.clips: ClipBuffers | None = None
        self.motion = MotionGate()  # where to detect, and what the preview must hide
        self.moving: list = []  # this frame's moving regions
        self._stop = False
        self.scoring: Scoring | None = None
        self.start_scoring()

    def start_scoring(self) -> Scoring:
        """Start the quality model where the schedule puts it (a process starts now, so its
        start-up overlaps the camera's own); run() stops it when it ends."""
        if self.scoring is None:
            gate = self.cfg.gate
            self.scoring = Scoring(
                self.scorer, self.cfg.schedule.scoring, gate.enabled, gate.slack, self.margin
            )
        return self.scoring

    def request_stop(self) -> None:
        """Ask the loop to end after the current frame, sealing every live track: safe to
        call from a signal handler (nothing is interrupted half-way through a seal)."""
        self._stop = True

    def _record_id(self, source_key: str, tr: Track) -> str:
        return str(
            uuid.uuid5(RECORD_NS, f"{self.cfg.camera_id}|{source_key}|{tr.first_index}|{tr.id}")
        )

    def _is_face(self, tr: Track, cand: Candidate) -> bool:
        ev = self.cfg.evidence
        if float(np.median(tr.probs or [cand.det_prob])) < ev.min_median_prob:
            return False
        return ev.min_quality is None or cand.quality >= ev.min_quality

    def _seal_and_store(self, source_key: str, tr: Track, summary: CaptureSummary) -> None:
        cand = self.best.pop(tr.id)
        before, after = self.clips.pop(tr.id) if self.clips else ([], [])
        if cand is None:
            return
        if tr.hits < self.cfg.min_track_frames:
            summary.dropped_short += 1
            return
        if not self._is_face(tr, cand):
            summary.dropped_not_face += 1
            return
        key = self.keyring.key_for(cand.time)  # KeyRefused stops capture: never plaintext
        if key.cert.epoch_id not in self._registered:  # a key the keyring fetched since
            with self.factory.begin() as s:
                records.register_epochs(s, [key.cert])
            self._registered.add(key.cert.epoch_id)
        rid = self._record_id(source_key, tr)
        header = sealing.RecordHeader(
            rid, self.cfg.camera_id, key.cert.epoch_id, tr.first_seen, tr.last_seen, cand.time
        )
        meta = {
            "camera_id": self.cfg.camera_id,
            "track_id": tr.id,
            "first_seen": tr.first_seen.isoformat(),
            "last_seen": tr.last_seen.isoformat(),
            "best_time": cand.time.isoformat(),
            "best_frame": cand.frame_index,
            "box": [round(v, 1) for v in cand.box],
            "quality": round(cand.quality, 3),
            "detector_score": round(cand.det_prob, 4),
            "frames": tr.hits,
        }
        clip = [self._jpeg(c) for c in (*before, cand.crop, *after)] if self.clips else []
        if clip:
            meta["clip"] = {"frames": len(clip), "best_at": len(before), "fps": self.fps}
        sealed = key.seal(self._jpeg(cand.crop), meta, header, clip)
        now = self.clock()
        expires = records.expires_at(cand.time, self.cfg.retention)
        records.put(self.factory, [(sealed, tr.id, cand.quality)], now, expires)
        summary.records += 1
        if self.cfg.keep_histories:  # a camera that runs for days keeps neither
            summary.record_ids.append(rid)
            self.sealed[tr.id] = (cand.frame_index, cand.quality)
        if self.on_sealed:  # only after the transaction committed
            self.on_sealed(rid, meta)

    def _jpeg(self, bgr) -> bytes:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def _plan(self, frame: Frame):
        """How the detector looks at this frame: ("whole",) every frame for the reference
        pipeline; else ("scan", regions, predicted) a few times a second, where MTCNN looks
        for new faces in the moving regions (new faces enter by moving) and O-Net re-finds
        the live tracks at their predicted boxes; ("refine", predicted) on the frames in
        between; None where nothing is tracked and no scan is due (the tracker predicts)."""
        sch = self.cfg.schedule
        self.moving = moving = self.motion(frame.bgr)  # keeps the background model current
        if sch.every_frame:
            return ("whole",)
        h, w = frame.bgr.shape[:2]
        whole = [(0.0, 0.0, float(w), float(h))]
        live = list(self.tracker.tracks.values())
        predicted = [tr.predicted(frame.time, self.fps) for tr in live]
        self._unseen = [frame.index - tr.last_index for tr in live]  # frames since seen
        t = frame.time  # datetimes, exact to the microsecond: a file's scans fall on the same
        regions = None  # frames whenever it is run (float seconds since 1970 did not)
        if self._last_rescan is None or t - self._last_rescan >= self._rescan_every:
            self._last_rescan, regions = t, whole  # a face that stands still is found too
        elif frame.index - self._last_scan_index >= sch.scan_interval:
            area = sum((x2 - x1) * (y2 - y1) for x1, y1, x2, y2 in moving)
            regions = whole if area >= sch.whole_above * w * h else (moving or None)
        if regions is not None:
            self._last_scan_index = self._last_track_index = frame.index
            return ("scan", regions, predicted)
        if live and frame.index - self._last_track_index >= sch.track_interval:
            self._last_track_index = frame.index
            return ("refine", predicted)
        return None

    def _detect(self, frame: Frame, plan) -> list:
        if plan[0] == "whole" or not hasattr(self.detector, "refine"):
            return self.detector(frame.bgr)
        found = self.detector.in_regions(frame.bgr, plan[1]) if plan[0] == "scan" else []
        # A face re-found far from where its track predicted it is a neighbour's face (the
        # predicted one is hidden behind it): taking it would hand one person's track to
        # another. Where two tracks re-find one face, the closer prediction keeps it.
        predicted, sch = plan[-1], self.cfg.schedule
        refound = [
            (iou(d.box, p), d) if d is not None else (0.0, None)
            for d, p in zip(self.detector.refine(frame.bgr, predicted), predicted, strict=True)
        ]
        floor = self.cfg.schedule.refind_iou
        for overlap, d in sorted(refound, key=lambda x: -x[0]):
            if overlap >= floor and all(iou(d.box, o.box) < 0.4 for o in found):
                found.append(d)
        # A face O-Net did not re-find where it was predicted (it moved more than the filter
        # knew: a young track has no velocity yet) is looked for by MTCNN in a region around
        # the prediction, all such regions in one pass. A face unseen for longer is mostly
        # hidden or turned away, and searching for it on every frame cost a fifth of the
        # loop's time: it is searched 1, 2, 4, 8... frames after it was last seen (the scans
        # of the moving regions look everywhere meanwhile).
        missed = [
            p
            for (overlap, _), p, unseen in zip(refound, predicted, self._unseen, strict=True)
            if overlap < floor and (unseen & (unseen - 1) == 0 or not sch.search_backoff)
        ]
        missed = [p for p in missed if all(iou(p, o.box) < 0.3 for o in found)]
        if missed:
            regions = []
            for x1, y1, x2, y2 in missed:
                pad = max(x2 - x1, y2 - y1)
                regions.append((x1 - pad, y1 - pad, x2 + pad, y2 + pad))
            for d in self.detector.in_regions(frame.bgr, merge_boxes(regions)):
                if all(iou(d.box, o.box) < 0.4 for o in found):
                    found.append(d)
        return found

    def _floors(self, pairs: list) -> list[float]:
        """Each crop's track's best score so far: what the crop must beat to matter."""
        return [c.quality if (c := self.best.get(t)) is not None else -np.inf for _, t in pairs]

    def _queue_scores(self, frame: Frame, pairs: list, crops: list) -> None:
        """Hand a frame's crops to the scorer. While it is busy, frames' crops gather and go
        as one batch when it is free (the VAE costs 3 ms a crop in a batch of 10, 7 ms
        alone); a batch past MAX_BATCH waits for the scorer, which bounds memory when
        scoring falls behind."""
        self._buffer.append((frame, pairs, crops, self._floors(pairs)))
        busy = self._inflight is not None and not self._inflight.done()
        waiting = sum(len(b[2]) for b in self._buffer)
        if busy and waiting < MAX_BATCH and self.cfg.schedule.scoring != "inline":
            return
        if busy:
            self._inflight.result()
        self._submit()

    def _submit(self) -> None:
        if not self._buffer:
            return
        crops = [c for b in self._buffer for c in b[2]]
        floors = [f for b in self._buffer for f in b[3]]
        job = self._inflight = self._scoring.submit(crops, floors)
        at = 0
        for frame, pairs, part, _ in self._buffer:
            self._pending.append((frame, pairs, job, at, at + len(part)))
            at += len(part)
        self._buffer.clear()

    def _apply_scores(self, summary: CaptureSummary, wait: bool) -> None:
        """Take the scores that came back, in frame order (all of them with `wait`): each
        crop's quality into its track's history, its best, its clip."""
        if wait:
            self._submit()
        while self._pending and (wait or self._pending[0][2].done()):
            frame, pairs, job, at, end = self._pending.popleft()
            for (d, tid), q in zip(pairs, job.result()[at:end], strict=True):
                if q is None:
                    if self.clips:
                        self.clips.add(tid, d.crop, False)
                    continue
                summary.crops_scored += 1
                if self.cfg.keep_histories:
                    point = (frame.index, frame.time.timestamp(), q)
                    self.histories.setdefault(tid, []).append(point)
                new_best = self.best.offer(
                    tid, Candidate(q, d.crop, frame.index, frame.time, d.box, d.prob)
                )
                if self.clips:
                    self.clips.add(tid, d.crop, new_best)

    def _seal_scored(self, source_key: str, summary: CaptureSummary) -> None:
        """Seal the ended tracks whose every crop has been scored: a track that ended at
        frame i waits (without holding up the loop) until the scores of frames <= i came
        back."""
        unscored = [e[0].index for e in (*self._pending, *self._buffer)]
        oldest = min(unscored, default=None)
        while self._ended and (oldest is None or self._ended[0][0] < oldest):
            self._seal_and_store(source_key, self._ended.popleft()[1], summary)

    def _loop(self, source: Source, source_key: str, summary: CaptureSummary) -> None:
        """Decoding runs on the source's thread and scoring in its own process, so the two
        cores work on three frames at once: decode the next, detect and track this one,
        score earlier ones' crops. A track is sealed only once every crop of it was scored."""
        live = getattr(source, "live", False)
        inline = self.cfg.schedule.scoring == "inline"
        trimmed = time.monotonic()
        for frame in source:
            started = time.monotonic()
            if started - trimmed >= TRIM_SECONDS:
                release_free_memory()
                trimmed = started
            plan = self._plan(frame)
            faces: list = []
            if plan is None:
                self.tracker.age(frame.index)
            else:
                dets = self._detect(frame, plan)
                summary.detector_runs += 1
                summary.faces_detected += len(dets)
                ids, ended = self.tracker.update(
                    [d.box for d in dets], frame.index, frame.time, [d.prob for d in dets]
                )
                pairs = [(d, tid) for d, tid in zip(dets, ids, strict=True) if tid != -1]
                crops = [d.crop for d, _ in pairs]  # cut now: the frame is not kept
                self._queue_scores(frame, pairs, crops)
                faces = [(d, tid, None) for d, tid in pairs]
                if inline:
                    job, at, end = self._pending[-1][2:]
                    qualities = job.result()[at:end]
                    faces = [(d, tid, q) for (d, tid), q in zip(pairs, qualities, strict=True)]
                self._apply_scores(summary, wait=inline)
                self._ended.extend((frame.index, tr) for tr in ended)
            self._seal_scored(source_key, summary)
            summary.frames += 1
            if self.on_frame:
                self.on_frame(frame, faces, summary)
            if self._stop:
                summary.stopped = True
                break
            if live and not self.tracker.tracks and not self.moving:  # an empty scene: the
                # newest frame a fifth of a second from now is as good as every frame
                time.sleep(max(0.0, 1 / self.cfg.schedule.idle_fps - (time.monotonic() - started)))
        self._apply_scores(summary, wait=True)
        self._seal_scored(source_key, summary)

    def run(self, source: Source) -> CaptureSummary:
        summary = CaptureSummary()
        self.fps = float(getattr(source, "fps", 25.0))
        self.tracker.fps = self.fps
        if self.cfg.clip_seconds > 0:
            self.clips = ClipBuffers(max(1, round(self.cfg.clip_seconds * self.fps / 2)))
        source_key = source.identity
        with self.factory.begin() as s:
            records.register_epochs(s, self.keyring.certs)
        self._registered = {c.epoch_id for c in self.keyring.certs}
        self._last_rescan = None
        self._rescan_every = timedelta(seconds=self.cfg.schedule.rescan_seconds)
        self._last_scan_index = self._last_track_index = -(10**9)
        # the detector and the scoring process are loaded before the first frame is read: a
        # live source is read from the present on, not from a backlog made while they load
        self._scoring = self.start_scoring()
        if getattr(source, "shape", None) is not None and hasattr(self.detector, "warm"):
            self.detector.warm(source.shape)
        self._scoring.wait_ready()
        t0 = datetime.now(UTC)
        self._pending: deque = deque()  # (frame, pairs, job, slice) scores not yet applied
        self._buffer: list = []  # frames' crops waiting for the scorer to be free
        self._inflight = None
        self._ended: deque = deque()  # (frame index, track) ended, waiting for scores
        try:
            self._loop(source, source_key, summary)
        finally:
            self._scoring.close()
            self.scoring = None
        for tr in self.tracker.finish():
            self._seal_and_store(source_key, tr, summary)
        summary.tracks = self.tracker.started
        summary.seconds = round((datetime.now(UTC) - t0).total_seconds(), 2)
        summary.fps = round(summary.frames / summary.seconds, 2) if summary.seconds else 0.0
        summary.truncated = source.status.truncated
        if getattr(source, "live", False):
            summary.skipped_frames = source.status.skipped
            summary.max_lag_s = source.status.max_lag_s
        return summary
