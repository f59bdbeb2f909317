"""The capture loop: source -> detect -> track -> score -> keep best -> seal -> store.

Plaintext face crops exist only in memory, between detection and sealing. A record id is
derived from the camera, the source and the track's first frame, so re-running the same
input after a crash reproduces the same ids and the idempotent store makes no duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import cv2

from escrow import records, sealing
from escrow.detect import FrameDetector
from escrow.keyring import CameraKeyring, FreshKeyring
from escrow.selection import BestCrops, Candidate, ClipBuffers
from escrow.sources import Frame, Source
from escrow.track import Track, Tracker
from vae.framing import CAPTURE_MARGIN

RECORD_NS = uuid.UUID("8f6c3c1e-2b1d-4f3e-9a53-6f1b2f0c9d11")


@dataclass
class CaptureConfig:
    camera_id: str
    min_track_frames: int = 3
    max_missed: int = 5
    max_distance: float = 1.0
    retention: timedelta = timedelta(hours=72)
    jpeg_quality: int = 95
    clip_seconds: float = 0.0  # also seal the track's crops this long around the best frame


@dataclass
class CaptureSummary:
    frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    tracks: int = 0
    records: int = 0
    dropped_short: int = 0
    faces_detected: int = 0
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
                "faces_detected",
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
        self.tracker = Tracker(cfg.max_distance, cfg.max_missed)
        self.best = BestCrops()
        self.on_frame, self.on_sealed = on_frame, on_sealed
        self.histories: dict[int, list[tuple[int, float, float]]] = {}  # frame, t, quality
        self.clips: ClipBuffers | None = None
        self._stop = False

    def request_stop(self) -> None:
        """Ask the loop to end after the current frame, sealing every live track: safe to
        call from a signal handler (nothing is interrupted half-way through a seal)."""
        self._stop = True

    def _record_id(self, source_key: str, tr: Track) -> str:
        return str(
            uuid.uuid5(RECORD_NS, f"{self.cfg.camera_id}|{source_key}|{tr.first_index}|{tr.id}")
        )

    def _seal_and_store(self, source_key: str, tr: Track, summary: CaptureSummary) -> None:
        cand = self.best.pop(tr.id)
        before, after = self.clips.pop(tr.id) if self.clips else ([], [])
        if cand is None:
            return
        if tr.hits < self.cfg.min_track_frames:
            summary.dropped_short += 1
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
        summary.record_ids.append(rid)
        if self.on_sealed:  # only after the transaction committed
            self.on_sealed(rid, meta)

    def _jpeg(self, bgr) -> bytes:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    def run(self, source: Source) -> CaptureSummary:
        summary = CaptureSummary()
        self.fps = float(getattr(source, "fps", 25.0))
        if self.cfg.clip_seconds > 0:
            self.clips = ClipBuffers(max(1, round(self.cfg.clip_seconds * self.fps / 2)))
        source_key = source.identity
        with self.factory.begin() as s:
            records.register_epochs(s, self.keyring.certs)
        self._registered = {c.epoch_id for c in self.keyring.certs}
        t0 = datetime.now(UTC)
        seen_tracks: set[int] = set()
        for frame in source:
            dets = self.detector(frame.bgr)
            summary.faces_detected += len(dets)
            # the sealed crop is cut at the detector's margin; the scorer takes its own framing
            qualities = (
                self.scorer.score([d.crop for d in dets], order="bgr", crop_margin=self.margin)
                if dets
                else []
            )
            ids, ended = self.tracker.update([d.box for d in dets], frame.index, frame.time)
            for d, tid, q in zip(dets, ids, qualities, strict=True):
                seen_tracks.add(tid)
                self.histories.setdefault(tid, []).append(
                    (frame.index, frame.time.timestamp(), float(q))
                )
                new_best = self.best.offer(
                    tid, Candidate(float(q), d.crop, frame.index, frame.time, d.box, d.prob)
                )
                if self.clips:
                    self.clips.add(tid, d.crop, new_best)
            for tr in ended:
                self._seal_and_store(source_key, tr, summary)
            summary.frames += 1
            if self.on_frame:
                self.on_frame(frame, list(zip(dets, ids, qualities, strict=True)), summary)
            if self._stop:
                summary.stopped = True
                break
        for tr in self.tracker.finish():
            self._seal_and_store(source_key, tr, summary)
        summary.tracks = len(seen_tracks)
        summary.seconds = round((datetime.now(UTC) - t0).total_seconds(), 2)
        summary.fps = round(summary.frames / summary.seconds, 2) if summary.seconds else 0.0
        summary.truncated = source.status.truncated
        if getattr(source, "live", False):
            summary.skipped_frames = source.status.skipped
            summary.max_lag_s = source.status.max_lag_s
        return summary
