"""Presence accuracy of an exported model on held-out crops, and the threshold it should ship with.

``python -m export.presence_eval --model rehab/models/default.onnx --json presence_eval.json``

Crops are made by train/'s own samplers without augmentation (the same code that made the training crops) and
run through the runtime (``PoseModel.predict_batch`` on the 192x192 crop as the whole image, i.e. the crop
itself), so the numbers are what the app computes.

- validation (chooses the threshold): the last 500 LSPET images, which the presence fine-tuning left out
  (250 person crops and 250 whole images letterboxed = persons; background crops away from the annotated
  person = person-free) and 300 synthetic person-free images of the evaluation seed;
- test (held out, touched once): LSP test im1001-im2000 made the same way (500 + 500 persons, background crops
  of all 1000), 300 synthetic images of another seed,
  and real frames of the held-out clip pose2sim_balancing_cam01 (every frame letterboxed = persons; its
  ceiling and floor bands, which nobody enters = person-free).

Threshold: the highest one whose validation recall of persons is at least ``--min-recall`` (a missed patient
is worse than a phantom frame), rounded down to ``THRESHOLD_STEP``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import typer
from tqdm import tqdm

from rehab.core.presence_metrics import binary_at, roc_auc, threshold_for_recall
from rehab.runtime.model import MAX_BATCH, PoseModel
from train.config import Config, SourceConfig, default_shared_dir, resolve
from train.dataset import build_source_dataset
from train.presence import SyntheticDataset, read_video_frames

logger = logging.getLogger(__name__)

DEFAULT_MIN_RECALL = 0.99
# The hysteresis' higher threshold (rehab.presence_acquire_threshold): a person not yet tracked must reach it.
# Chosen for this validation recall of persons, the found-rate target on real footage.
DEFAULT_ACQUIRE_MIN_RECALL = 0.95
THRESHOLD_STEP = 0.01
VALIDATION_SYNTHETIC_SEED = 0
TEST_SYNTHETIC_SEED = 1000
SYNTHETIC_COUNT = 300
# Person crops and whole images per set, evenly spaced (background crops use every image of the split: about
# two draws in three find no clear crop on these tight photos).
VALIDATION_PERSON_LIMIT = 250
TEST_PERSON_LIMIT = 500
# The held-out clip and its person-free bands, hand-labelled on the full-resolution (1080x1920) frames: the
# person never goes above y=326 or below y=1543 (frame-to-median difference over all 100 frames), and the
# bystander at the left stays within x < 300, y 250-800; the bands are the whole width above y=300
# (ceiling, cameras) and below y=1620 (force plate and floor).
HELD_OUT_CLIP = "videos/pose2sim_balancing_cam01.mp4"
HELD_OUT_BANDS_Y = {"cam01 ceiling band (y 0-300)": (0, 300), "cam01 floor band (y 1620-1920)": (1620, 1920)}


@dataclass(frozen=True)
class CropSet:
    """Crops (N, h, w, 3) RGB uint8 with labels (True = a person is in the crop) and the subset each came from."""

    images: np.ndarray
    labels: np.ndarray
    subsets: tuple[str, ...]


def _dataset_crops(ds, name: str) -> tuple[list[np.ndarray], list[bool], list[str]]:
    images, labels, names = [], [], []
    for i in range(len(ds)):
        sample = ds[i]
        if float(sample["presence_weight"]) == 0:
            continue  # a background draw that found no clear crop: not a crop at all
        images.append(sample["image"].numpy().transpose(1, 2, 0))
        labels.append(float(sample["presence"]) > 0.5)
        names.append(name)
    return images, labels, names


def _lsp_like_sets(cfg: Config, kind: str, path: str, split: str, start: int | None,
                   limit: int) -> list[tuple[str, SourceConfig]]:
    base = dict(kind=kind, path=path, split=split, start=start)
    return [(f"{kind} {split} person crops", SourceConfig(**base, limit=limit)),
            (f"{kind} {split} whole images", SourceConfig(**base, crop="full_image", limit=limit)),
            (f"{kind} {split} background crops", SourceConfig(**base, sample="background"))]


def _video_sets(root: Path, size) -> tuple[list[np.ndarray], list[bool], list[str]]:
    frames = read_video_frames(root / HELD_OUT_CLIP, frame_step=1, keep_scale=1.0)
    images, labels, names = [], [], []
    w, h = size
    for frame in frames:
        images.append(_letterbox(frame, size))
        labels.append(True)
        names.append("cam01 whole frames")
        for band, (y1, y2) in HELD_OUT_BANDS_Y.items():
            images.append(_letterbox(frame[y1:y2], size))
            labels.append(False)
            names.append(band)
    return images, labels, names


def _letterbox(image: np.ndarray, size) -> np.ndarray:
    """The whole image scaled into ``size`` (w, h) with black borders, centred: what predict(image) crops."""
    w, h = size
    ih, iw = image.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
    out = np.zeros((h, w, 3), np.uint8)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


def build_sets(root: Path, size) -> dict[str, CropSet]:
    """The validation and test crop sets (see the module doc)."""
    cfg = Config()
    cfg.data.root = str(root)
    cfg.model.input_size = list(size)
    cfg.model.heatmap_size = [size[0] // 4, size[1] // 4]
    cfg = resolve(cfg)
    out = {}
    plan = {"validation": (_lsp_like_sets(cfg, "lspet", "data/lspet", "all", -500, VALIDATION_PERSON_LIMIT),
                           VALIDATION_SYNTHETIC_SEED),
            "test": (_lsp_like_sets(cfg, "lsp", "data/lsp", "test", None, TEST_PERSON_LIMIT), TEST_SYNTHETIC_SEED)}
    for role, (sources, seed) in plan.items():
        images, labels, names = [], [], []
        for name, src in sources:
            part = _dataset_crops(build_source_dataset(cfg, src, train=False), name)
            for acc, new in zip((images, labels, names), part):
                acc.extend(new)
        synthetic = SyntheticDataset(SYNTHETIC_COUNT, 14, size, cfg.model.heatmap_size, seed=seed, train=False)
        for acc, new in zip((images, labels, names), _dataset_crops(synthetic, "synthetic images")):
            acc.extend(new)
        if role == "test":
            for acc, new in zip((images, labels, names), _video_sets(root, size)):
                acc.extend(new)
        out[role] = CropSet(np.stack(images), np.array(labels), tuple(names))
        logger.info("%s: %d crops (%d with a person)", role, len(labels), int(np.sum(labels)))
    return out


def presence_scores(model: PoseModel, images_rgb: np.ndarray, flip_test: bool = False,
                    progress: bool = True) -> np.ndarray:
    """Presence probability of every crop, the crop being the whole image given to the runtime."""
    if not model.has_presence:
        raise ValueError(f"model {model.path} has no presence output (metadata rehab.presence_output)")
    out = []
    for start in tqdm(range(0, len(images_rgb), MAX_BATCH), desc="presence", disable=not progress):
        batch = [np.ascontiguousarray(im[:, :, ::-1]) for im in images_rgb[start:start + MAX_BATCH]]
        out.extend(p.presence for p in model.predict_batch(batch, flip_test=flip_test))
    return np.asarray(out, dtype=np.float64)


def _floor_step(value: float) -> float:
    return math.floor(value / THRESHOLD_STEP + 1e-9) * THRESHOLD_STEP


def summarise(scores: np.ndarray, crops: CropSet, threshold: float) -> dict:
    """AUC, confusion at ``threshold`` and at 0.5, and per-subset pass rates."""
    at = binary_at(scores, crops.labels, threshold)
    half = binary_at(scores, crops.labels, 0.5)
    subsets = {}
    for name in dict.fromkeys(crops.subsets):
        mask = np.array([s == name for s in crops.subsets])
        person = bool(crops.labels[mask][0])
        called = scores[mask] >= threshold
        subsets[name] = {"crops": int(mask.sum()), "person": person,
                         "called_person": float(called.mean()), "median_presence": float(np.median(scores[mask]))}
    return {"crops": int(len(scores)), "persons": int(crops.labels.sum()), "auc": roc_auc(scores, crops.labels),
            "at_threshold": at.to_dict(), "at_0.5": half.to_dict(), "subsets": subsets}


def evaluate(model_path: Path | None, root: Path, min_recall: float = DEFAULT_MIN_RECALL,
             threshold: float | None = None, flip_test: bool = False, progress: bool = True,
             acquire_min_recall: float = DEFAULT_ACQUIRE_MIN_RECALL) -> dict:
    """Scores on both sets, the chosen threshold (``threshold`` given: use it instead) and the summaries."""
    model = PoseModel.load(model_path, providers=["cpu"])
    sets = build_sets(root, model.info.input_size)
    val_scores = presence_scores(model, sets["validation"].images, flip_test, progress)
    chosen = _floor_step(threshold_for_recall(val_scores, sets["validation"].labels, min_recall))
    chosen = min(max(chosen, THRESHOLD_STEP), 1 - THRESHOLD_STEP)
    use = chosen if threshold is None else threshold
    acquire = _floor_step(threshold_for_recall(val_scores, sets["validation"].labels, acquire_min_recall))
    acquire = min(max(acquire, use), 1 - THRESHOLD_STEP)
    test_scores = presence_scores(model, sets["test"].images, flip_test, progress)
    return {"model": str(model.path), "flip_test": flip_test, "min_recall": min_recall,
            "threshold_for_min_recall": chosen, "threshold": use,
            "rule": f"highest threshold (step {THRESHOLD_STEP}) with validation recall of persons >= {min_recall}",
            "acquire_threshold": acquire,
            "acquire_rule": f"highest threshold (step {THRESHOLD_STEP}) with validation recall of persons >= "
                            f"{acquire_min_recall}, at least the threshold",
            "validation": summarise(val_scores, sets["validation"], use),
            "validation_at_acquire": binary_at(val_scores, sets["validation"].labels, acquire).to_dict(),
            "test": summarise(test_scores, sets["test"], use)}


app = typer.Typer(add_completion=False, help=__doc__.split("\n\n")[0])


@app.command()
def main(model: Optional[Path] = typer.Option(None, help="The .onnx file (default: the shipped model)."),
         data_root: Optional[Path] = typer.Option(None, help="The shared folder (default: $REHAB_SHARED_DIR, else "
                                                             "../shared)."),
         min_recall: float = typer.Option(DEFAULT_MIN_RECALL, help="Validation recall of persons to keep."),
         acquire_min_recall: float = typer.Option(DEFAULT_ACQUIRE_MIN_RECALL,
                                                  help="Validation recall of persons at the acquire threshold."),
         threshold: Optional[float] = typer.Option(None, help="Report at this threshold instead of the chosen one."),
         flip_test: bool = typer.Option(False, "--flip-test", help="Average the logits of the crop and its mirror."),
         json_path: Optional[Path] = typer.Option(None, "--json", help="Write the results here."),
         progress: bool = typer.Option(True, "--progress/--no-progress")) -> None:
    """Presence accuracy on held-out crops and the threshold for a recall target."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        result = evaluate(model, data_root or default_shared_dir(), min_recall, threshold, flip_test, progress,
                          acquire_min_recall)
    except (FileNotFoundError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for role in ("validation", "test"):
        r = result[role]
        a = r["at_threshold"]
        typer.echo(f"{role}: {r['crops']} crops ({r['persons']} persons), AUC {r['auc']:.4f}; at {result['threshold']:.2f}: "
                   f"recall {a['recall']:.4f}, specificity {a['specificity']:.4f}, accuracy {a['accuracy']:.4f}")
        for name, s in r["subsets"].items():
            typer.echo(f"  {name}: {s['crops']} crops, called person {100 * s['called_person']:.1f}%, "
                       f"median presence {s['median_presence']:.3f}")
    a = result["validation_at_acquire"]
    typer.echo(f"acquire threshold {result['acquire_threshold']:.2f}: validation recall {a['recall']:.4f}, "
               f"specificity {a['specificity']:.4f}")
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    app()
