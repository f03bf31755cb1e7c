"""Hard person-free crops: where the shipped model's own search-and-track loop locks onto nobody.

At run time a lost track searches the frame, refines on the region the joints span, and then tracks the crop
that the pose gives. On branches against the sky, railings or a wall edge, that loop can frame a "skeleton" so
well that the presence of the tracked crop rises to 0.9 while the first, wider view said 0.5. Random background
crops rarely look like such a self-framed crop, so the presence head never learns to reject them.

Mining replays the loop on the person-free parts of annotated photos: each strip of an image beside the
annotated person's grown joint box (left, right, above, below) is treated as a frame, searched, refined and
tracked for a few steps with the runtime's own model and ROI code. Strips where the last tracked crop is still
called a person are hard negatives: the strip and the crops the loop looked at are kept (image pixels).

Photos of sports have spectators and other athletes who are not annotated. The miner cannot tell them from a
phantom (it selects exactly the crops that look like people), so oracles of other families must clear each strip
before it is used: ``keep_cleared`` keeps the strips in which MediaPipe Pose (full and heavy, run on the strip image
at a low detection threshold by benchmarks/mediapipe_runner.py, in its own venv) finds nobody, and
``drop_with_faces`` then drops those where CenterFace (the runtime's face detector) finds a face: crowds, which a
single-person pose detector misses.

    python -m train mine-negatives --out runs/mined/lspet.json --stop -500        # the miner (ONNX Runtime)
    python -m train mine-negatives --write-strips runs/mined/strips runs/mined/lspet.json   # strip images
    /work/mp-venv/bin/python benchmarks/mediapipe_runner.py images --list runs/mined/strips/list.json \
        --complexity 1 2 --min-detection-confidence 0.1 --out runs/mined/mediapipe.json
    python -m train mine-negatives --clear runs/mined/mediapipe.json runs/mined/lspet.json \
        --output train/configs/hard_negatives_lspet.json

Training reads the cleared file as a source ``kind: mined`` (``MinedDataset``): person-free crops at the mined
boxes, jittered, with zero heatmaps and presence 0.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from rehab.core.transforms import SCALE_UNIT_PX, affine_matrix, letterbox
from train.presence import empty_meta, person_free_sample

logger = logging.getLogger(__name__)

# A strip narrower than this (image pixels) is too small to be searched as a frame.
MIN_STRIP_SIDE_PX = 48
# Person box grown by this fraction of its larger side before strips are cut beside it (as background crops).
PERSON_MARGIN = 0.15
TRACK_STEPS = 3
# Training: share of samples that show the whole strip letterboxed (the search's first view), and the jitter of
# a mined box (centre shift as a fraction of its side, scale multiplier range).
WHOLE_STRIP_PROB = 0.2
JITTER_SHIFT = 0.1
JITTER_SCALE = (0.85, 1.2)
FORMAT = "rehab-mined-negatives/1"
# A face at this CenterFace score means a person is in the strip (recall over precision: strips are plentiful).
FACE_THRESHOLD = 0.4


@dataclass
class MinedStrip:
    image: str  # path of the photo (as the dataset reader gives it)
    strip_xyxy: tuple[int, int, int, int]  # image pixels
    boxes_xyxy: list[tuple[float, float, float, float] | None] = field(default_factory=list)  # strip pixels
    presences: list[float] = field(default_factory=list)  # the model's presence for each box, in loop order


def person_strips(image_size, joints_px: np.ndarray, annotated: np.ndarray,
                  min_side: int = MIN_STRIP_SIDE_PX) -> list[tuple[int, int, int, int]]:
    """The full-height and full-width strips of an image (w, h) that touch no part of the grown joint box."""
    w, h = (int(v) for v in image_size)
    kp = np.asarray(joints_px, dtype=np.float64)[np.asarray(annotated, bool)]
    if len(kp) < 2:
        return []
    (x1, y1), (x2, y2) = kp.min(axis=0), kp.max(axis=0)
    grow = PERSON_MARGIN * max(x2 - x1, y2 - y1)
    x1, y1 = int(np.floor(max(0.0, x1 - grow))), int(np.floor(max(0.0, y1 - grow)))
    x2, y2 = int(np.ceil(min(w, x2 + grow))), int(np.ceil(min(h, y2 + grow)))
    strips = [(0, 0, x1, h), (x2, 0, w, h), (0, 0, w, y1), (0, y2, w, h)]
    return [s for s in strips if min(s[2] - s[0], s[3] - s[1]) >= min_side]


def replay_loop(model, image_bgr: np.ndarray, settings, steps: int = TRACK_STEPS) -> MinedStrip:
    """The runtime's search, refine and track steps on one still image (as a frame), with their presences."""
    from rehab.runtime.roi import best_window, presence_thresholds, roi_from_pose, search_windows

    size = (image_bgr.shape[1], image_bgr.shape[0])
    _, acquire = presence_thresholds(model.info, settings.scores.presence_min, settings.scores.presence_acquire_min)
    windows = search_windows(size, settings.roi.search_window_scales, settings.roi.search_overlap,
                             min(model.info.input_size))
    poses = model.predict_batch_checked([image_bgr] * len(windows), windows)
    presences = [p.presence or 0.0 for p in poses]
    best = best_window(presences, acquire, [int((p.scores >= settings.scores.joint_min_score).sum()) for p in poses],
                       settings.roi.min_joints)
    strip = MinedStrip("", (0, 0, *size), [windows[best]], [presences[best]])
    pose = poses[best]
    for _ in range(steps if presences[best] >= acquire else 0):
        roi = roi_from_pose(pose.keypoints_px, pose.scores, size, settings.roi, settings.scores.joint_min_score)
        if roi.bootstrap:
            break
        box = roi.box_xyxy
        pose = model.predict_checked(image_bgr, bbox_xyxy=box)
        strip.boxes_xyxy.append(tuple(float(v) for v in box))
        strip.presences.append(float(pose.presence or 0.0))
    return strip


def mine(records, model, settings, steps: int = TRACK_STEPS) -> tuple[list[MinedStrip], int]:
    """(hard strips, strips searched): strips whose last tracked crop the model still calls a person."""
    from rehab.runtime.roi import presence_thresholds

    keep, _ = presence_thresholds(model.info, settings.scores.presence_min, settings.scores.presence_acquire_min)
    hard: list[MinedStrip] = []
    searched = 0
    for k, record in enumerate(records):
        image = cv2.imread(str(record.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read image {record.image_path}")
        for s in person_strips((image.shape[1], image.shape[0]), record.joints_px, record.annotated):
            searched += 1
            cut = np.ascontiguousarray(image[s[1]:s[3], s[0]:s[2]])
            found = replay_loop(model, cut, settings, steps)
            if len(found.boxes_xyxy) > 1 and found.presences[-1] >= keep:
                found.image, found.strip_xyxy = str(record.image_path), tuple(int(v) for v in s)
                hard.append(found)
        if (k + 1) % 200 == 0:
            logger.info("mined %d of %d images: %d hard strips of %d", k + 1, len(records), len(hard), searched)
    return hard, searched


def save(path: Path, strips: list[MinedStrip], about: dict) -> None:
    """One strip per line (boxes to 0.1 px, presences to 0.001), written whole or not at all."""
    def row(s: MinedStrip) -> dict:
        return {"image": s.image, "strip_xyxy": list(s.strip_xyxy),
                "boxes_xyxy": [None if b is None else [round(float(v), 1) for v in b] for b in s.boxes_xyxy],
                "presences": [round(float(v), 3) for v in s.presences]}

    path.parent.mkdir(parents=True, exist_ok=True)
    head = json.dumps({"format": FORMAT, **about})[:-1]
    body = ",\n".join(json.dumps(row(s)) for s in strips)
    tmp = path.with_suffix(path.suffix + ".partial")
    tmp.write_text(f'{head}, "strips": [\n{body}\n]}}\n', encoding="utf-8")
    tmp.replace(path)


def load(path: Path) -> tuple[dict, list[MinedStrip]]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read mined negatives {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("strips"), list):
        raise ValueError(f"{path} is not a mined-negatives file (format {FORMAT!r})")
    strips = []
    for i, s in enumerate(data["strips"]):
        try:
            strips.append(MinedStrip(str(s["image"]), tuple(int(v) for v in s["strip_xyxy"]),
                                     [None if b is None else tuple(float(v) for v in b) for b in s["boxes_xyxy"]],
                                     [float(v) for v in s["presences"]]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: strip {i} is malformed ({exc})") from exc
    about = {k: v for k, v in data.items() if k not in ("format", "strips")}
    return about, strips


def image_path(strip: MinedStrip, image_root: Path | None) -> Path:
    path = Path(strip.image)
    return path if path.is_absolute() or image_root is None else image_root / path


def relative_images(strips: list[MinedStrip], image_root: Path) -> None:
    """Image paths relative to ``image_root`` (the shared folder) where they lie under it, so the file travels."""
    for s in strips:
        try:
            s.image = str(Path(s.image).resolve().relative_to(Path(image_root).resolve()))
        except ValueError:
            pass


def write_strips(strips: list[MinedStrip], out_dir: Path, image_root: Path | None = None) -> Path:
    """Each strip as a PNG in ``out_dir`` and list.json ({"images": [...]}, mediapipe_runner's input)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, s in enumerate(strips):
        image = cv2.imread(str(image_path(s, image_root)), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read image {image_path(s, image_root)}")
        x1, y1, x2, y2 = s.strip_xyxy
        path = out_dir / f"strip_{i:05d}.png"
        cv2.imwrite(str(path), image[y1:y2, x1:x2])
        paths.append(str(path))
    listing = out_dir / "list.json"
    listing.write_text(json.dumps({"images": paths}), encoding="utf-8")
    return listing


def keep_cleared(strips: list[MinedStrip], oracle_json: Path) -> tuple[list[MinedStrip], int]:
    """(strips no oracle run found a person in, strips dropped); the oracle ran on write_strips' list."""
    try:
        data = json.loads(Path(oracle_json).read_text(encoding="utf-8"))
        runs = data["runs"]
        results = [run["landmarks_px"] for run in runs]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{oracle_json} is not an oracle result of benchmarks/mediapipe_runner.py ({exc})") from exc
    if not results or any(len(r) != len(strips) for r in results):
        raise ValueError(f"{oracle_json} has {[len(r) for r in results]} results for {len(strips)} strips: "
                         "run the oracle on this file's --write-strips list")
    kept = [s for i, s in enumerate(strips) if all(r[i] is None for r in results)]
    return kept, len(strips) - len(kept)


def drop_with_faces(strips: list[MinedStrip], image_root: Path | None, threshold: float = FACE_THRESHOLD,
                    detector=None) -> tuple[list[MinedStrip], int]:
    """(strips in which CenterFace finds no face at ``threshold``, strips dropped): the second oracle, for crowds
    that a single-person pose detector misses."""
    from rehab.runtime.centerface import CenterFace

    detector = detector or CenterFace()
    kept = []
    for s in strips:
        image = cv2.imread(str(image_path(s, image_root)), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"cannot read image {image_path(s, image_root)}")
        x1, y1, x2, y2 = s.strip_xyxy
        if not len(detector.detect(np.ascontiguousarray(image[y1:y2, x1:x2]), threshold)):
            kept.append(s)
    return kept, len(strips) - len(kept)


class MinedDataset(Dataset):
    """Person-free crops at mined boxes (jittered) or whole mined strips letterboxed: presence 0, zero heatmaps."""

    def __init__(self, path: Path, num_joints: int, output_size, heatmap_size, count: int | None = None,
                 seed: int = 0, train: bool = True, flip_prob: float = 0.5, image_root: Path | None = None) -> None:
        _, self.strips = load(path)
        if not self.strips:
            raise ValueError(f"{path} holds no mined strips")
        self.image_root = image_root
        self.num_joints = num_joints
        self.output_size = tuple(int(v) for v in output_size)
        self.heatmap_size = tuple(int(v) for v in heatmap_size)
        self.count = count or len(self.strips) * 2
        self.seed, self.train = seed, train
        self.flip_prob = flip_prob if train else 0.0
        self.name = f"mined:{Path(path).stem}"
        self.epoch = 0
        self.given_up = 0
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.count

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _strip_rgb(self, i: int) -> np.ndarray:
        if i not in self._cache:
            s = self.strips[i]
            path = image_path(s, self.image_root)
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise FileNotFoundError(f"mined strip image not found: {path}")
            x1, y1, x2, y2 = s.strip_xyxy
            self._cache[i] = cv2.cvtColor(np.ascontiguousarray(image[y1:y2, x1:x2]), cv2.COLOR_BGR2RGB)
        return self._cache[i]

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, 41, self.epoch if self.train else 0, index])
        i = int(rng.integers(len(self.strips)))
        strip = self._strip_rgb(i)
        h, w = strip.shape[:2]
        boxes = [b for b in self.strips[i].boxes_xyxy if b is not None]
        if not boxes or rng.random() < WHOLE_STRIP_PROB:
            center, scale = letterbox((w, h), self.output_size)
        else:
            x1, y1, x2, y2 = boxes[int(rng.integers(len(boxes)))]
            aspect = self.output_size[0] / self.output_size[1]
            side_h = max((x2 - x1) / aspect, y2 - y1) * float(rng.uniform(*JITTER_SCALE))
            shift = rng.uniform(-JITTER_SHIFT, JITTER_SHIFT, 2) * side_h
            center = np.array([(x1 + x2) / 2, (y1 + y2) / 2]) + shift
            scale = np.array([side_h * aspect, side_h]) / SCALE_UNIT_PX
        matrix = affine_matrix(center, scale, 0.0, self.output_size)
        patch = cv2.warpAffine(strip, matrix, self.output_size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        flip = bool(rng.random() < self.flip_prob)
        if flip:
            patch = patch[:, ::-1]
        meta = empty_meta(self.num_joints, index, center, scale, 0.0, flip, matrix)
        return person_free_sample(patch, self.num_joints, self.heatmap_size, meta)

