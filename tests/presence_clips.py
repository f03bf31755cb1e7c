"""Ground truth for "is somebody there?" on real footage, labelled by hand, and clips built to test it.

The real clips show a person on every frame; what they lack is footage where nobody is there. The built
clips add it from the same footage: a region of the frame that nobody enters during a stretch of the clip,
cropped and scaled to the clip's size, then a cut to the full frame with the people in it (and back). So
each frame's truth is known by construction: ``present`` is True where a person is at least half visible.

Labels were made by looking at every 5th or 10th frame at full resolution (with a pixel grid drawn on); box
coordinates are in the original clip's pixels. The test (tests/integration/test_presence_real.py) and the
benchmark (benchmarks/bench_presence.py) read the same tables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rehab.runtime.video import VideoWriter, read_frames

# Every frame of these clips shows at least one person at least half visible (bystanders included: the
# masked woman at the left of balancing cam01, the man on the roof of sports2d_demo).
ALL_PRESENT = ("pose2sim_balancing_cam01.mp4", "pose2sim_balancing_cam02.mp4", "pose2sim_balancing_cam03.mp4",
               "pose2sim_balancing_cam04.mp4", "sports2d_demo.mp4")

# Person boxes (x1, y1, x2, y2) on frames of sports2d_demo (1768x994) where the pipeline once drew a skeleton
# on the trees, the sun or a wall edge: a skeleton drawn on such a frame must lie on one of them.
SPORTS2D_PEOPLE: dict[int, tuple[tuple[int, int, int, int], ...]] = {
    0: ((587, 73, 713, 460), (1460, 590, 1500, 640)),  # man on the roof; a far pedestrian
    60: ((540, 47, 731, 460), (1267, 540, 1493, 940)),  # man on the roof; woman walking in
    90: ((571, 60, 707, 453), (1067, 513, 1187, 927)),
    217: ((1300, 573, 1507, 893),),  # the runner
}


@dataclass(frozen=True)
class Segment:
    """Frames [start, stop) of ``clip``, cropped to ``crop_xyxy`` (None: the whole frame); ``present`` is the truth."""

    clip: str
    start: int
    stop: int
    crop_xyxy: tuple[int, int, int, int] | None
    present: bool


@dataclass(frozen=True)
class BuiltClip:
    name: str
    size: tuple[int, int]  # (w, h) of the written clip
    fps: float
    segments: tuple[Segment, ...]

    @property
    def truth(self) -> np.ndarray:
        """(frames,) bool: a person at least half visible on the frame."""
        return np.concatenate([np.full(s.stop - s.start, s.present) for s in self.segments])

    @property
    def entries(self) -> list[int]:
        """Frame indices where a person appears after a stretch with nobody (acquisition is timed from these)."""
        truth = self.truth
        return [i for i in range(1, truth.size) if truth[i] and not truth[i - 1]]


BUILT_CLIPS = (
    # Outdoors, 16:9: the shed's front (nobody passes in front of it before frame 125: the woman walking in
    # enters the crop at ~128, checked on frames 0-140), then the trees and the sun (where skeletons were drawn;
    # x from 870, clear of the roof man's outstretched hands, which reach x ~800), then the full scene with the
    # man on the roof and the woman walking in.
    BuiltClip("sports2d_cut", (640, 360), 30.0, (
        Segment("sports2d_demo.mp4", 0, 60, (100, 520, 700, 857), False),
        Segment("sports2d_demo.mp4", 0, 60, (870, 0, 1470, 337), False),
        Segment("sports2d_demo.mp4", 60, 150, None, True),
        Segment("sports2d_demo.mp4", 60, 120, (100, 520, 700, 857), False),
        Segment("sports2d_demo.mp4", 150, 220, None, True),
    )),
    # Indoors, portrait: the balancing patient, then the treadmill's end where nobody stands (camera 4's
    # lowest quarter), then the patient again: the patient leaves and comes back.
    BuiltClip("balancing_cut", (360, 640), 60.0, (
        Segment("pose2sim_balancing_cam01.mp4", 0, 50, None, True),
        Segment("pose2sim_balancing_cam04.mp4", 0, 100, (300, 1450, 564, 1920), False),
        Segment("pose2sim_balancing_cam01.mp4", 50, 100, None, True),
    )),
)


def find_clip(name: str, shared_dir: Path | None = None) -> Path | None:
    """A real clip from sample_videos/ (set-up fetches them) or ../shared/videos; None when neither has it."""
    repo = Path(__file__).resolve().parents[1]
    shared = shared_dir or Path(os.environ.get("REHAB_SHARED_DIR", repo.parent / "shared"))
    for candidate in (repo / "sample_videos" / name, shared / "videos" / name):
        if candidate.is_file():
            return candidate
    return None


def _fit(frame: np.ndarray, crop, size) -> np.ndarray:
    if crop is not None:
        x1, y1, x2, y2 = crop
        frame = frame[y1:y2, x1:x2]
    w, h = size
    fh, fw = frame.shape[:2]
    # Fill the clip's frame (cropping the longer side): a letterboxed band would itself be a cue.
    scale = max(w / fw, h / fh)
    resized = cv2.resize(frame, (max(int(round(fw * scale)), w), max(int(round(fh * scale)), h)),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y0, x0 = (resized.shape[0] - h) // 2, (resized.shape[1] - w) // 2
    return np.ascontiguousarray(resized[y0:y0 + h, x0:x0 + w])


def build_clip(clip: BuiltClip, out_dir: Path) -> Path:
    """Write ``clip`` as an H.264 MP4 in ``out_dir`` from the real footage; raises when a source is missing."""
    cache: dict[str, list[np.ndarray]] = {}
    out = Path(out_dir) / f"{clip.name}.mp4"
    with VideoWriter(out, fps=clip.fps) as writer:
        for seg in clip.segments:
            if seg.clip not in cache:
                path = find_clip(seg.clip)
                if path is None:
                    raise FileNotFoundError(f"{seg.clip} is in neither sample_videos/ nor ../shared/videos: "
                                            "run `python -m rehab.samples`")
                cache[seg.clip] = [f for f, _ in read_frames(path)]
            for frame in cache[seg.clip][seg.start:seg.stop]:
                writer.write(_fit(frame, seg.crop_xyxy, clip.size))
    return out


@dataclass(frozen=True)
class PresenceScore:
    """How the pipeline's person_found compares with the truth on one clip."""

    clip: str
    frames: int
    present_frames: int
    found_on_present: int
    absent_frames: int
    skeleton_on_absent: int
    acquisition_frames: tuple[int, ...]  # per entry: frames from the person appearing to the first found frame
    search_ms: float  # mean pose-stage time on frames that searched (nobody tracked)
    track_ms: float  # mean pose-stage time on tracked frames

    @property
    def found_rate(self) -> float:
        return self.found_on_present / self.present_frames if self.present_frames else float("nan")

    @property
    def phantom_rate(self) -> float:
        return self.skeleton_on_absent / self.absent_frames if self.absent_frames else float("nan")


def score_presence(name: str, found: np.ndarray, truth: np.ndarray, entries=(), pose_ms=None,
                   searched=None) -> PresenceScore:
    found, truth = np.asarray(found, bool), np.asarray(truth, bool)
    if found.shape != truth.shape:
        raise ValueError(f"{name}: {found.size} frames processed, {truth.size} labelled")
    acquisition = []
    for start in entries:
        hits = np.flatnonzero(found[start:])
        acquisition.append(int(hits[0]) if hits.size else int(truth.size - start))
    pose_ms = np.asarray(pose_ms if pose_ms is not None else np.full(truth.size, np.nan), float)
    searched = np.asarray(searched if searched is not None else np.zeros(truth.size, bool), bool)
    return PresenceScore(
        clip=name, frames=int(truth.size), present_frames=int(truth.sum()),
        found_on_present=int((found & truth).sum()), absent_frames=int((~truth).sum()),
        skeleton_on_absent=int((found & ~truth).sum()), acquisition_frames=tuple(acquisition),
        search_ms=float(pose_ms[searched].mean()) if searched.any() else float("nan"),
        track_ms=float(pose_ms[~searched].mean()) if (~searched).any() else float("nan"))


def run_pipeline(pipeline, path: Path, max_side_px: int | None = None):
    """(results without their frames, per-frame person_found) of one clip through ``pipeline``."""
    pipeline.reset()
    rows = []
    for i, (frame, t_s) in enumerate(read_frames(path, max_side_px=max_side_px)):
        r = pipeline.process(frame, t_s)
        rows.append({"frame": i, "found": r.person_found, "presence": r.presence,
                     "keypoints_px": None if r.pose is None else np.array(r.pose.keypoints_px),
                     "reliable": np.array(r.reliable), "searched": r.roi_reason.startswith("search"),
                     "pose_ms": r.timings_ms["pose"], "frame_size": (frame.shape[1], frame.shape[0]),
                     "new_rep": r.new_rep is not None, "angles_deg": dict(r.angles_deg)})
    return rows


def skeleton_on_people(rows, boxes_by_frame, source_size, grow: float = 0.25) -> dict[int, bool]:
    """Per labelled frame with a skeleton: whether its median reliable joint lies in a person box grown by ``grow``."""
    out = {}
    for frame, boxes in boxes_by_frame.items():
        row = rows[frame]
        if row["keypoints_px"] is None:
            continue
        fx = source_size[0] / row["frame_size"][0]
        kp = row["keypoints_px"][row["reliable"]] * fx
        if kp.size == 0:
            continue
        mx, my = np.median(kp, axis=0)
        ok = False
        for x1, y1, x2, y2 in boxes:
            dx, dy = (x2 - x1) * grow, (y2 - y1) * grow
            ok |= bool(x1 - dx <= mx <= x2 + dx and y1 - dy <= my <= y2 + dy)
        out[frame] = ok
    return out
