"""The presence head and its person-free training samples (train.presence, train.model, train.loss)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rehab.core.skeleton import LSP14  # noqa: E402
from rehab.core.transforms import apply_affine  # noqa: E402
from rehab.pose_annotations import PoseRecord  # noqa: E402
from train.config import AugmentConfig, Config, ConfigError, SourceConfig, resolve, resolve_augment  # noqa: E402
from train.dataset import CropSettings, PoseDataset  # noqa: E402
from train.engine import load_weights  # noqa: E402
from train.schedule import build_optimizer, build_scheduler, set_scheduled_lr  # noqa: E402
from train.loss import PresenceLoss  # noqa: E402
from train.model import WithPresence, build_model  # noqa: E402
from train.presence import (  # noqa: E402
    SYNTHETIC_KINDS,
    SyntheticDataset,
    background_crop,
    crop_is_clear,
    polygons_overlap,
    synthetic_image,
)

INPUT, HEATMAP = (64, 64), (16, 16)
SETTINGS = CropSettings(INPUT, HEATMAP, 2.0, 0.15, 1.25)


def _square(x1, y1, x2, y2):
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=float)


def test_polygon_overlap_separating_axis():
    assert polygons_overlap(_square(0, 0, 10, 10), _square(5, 5, 15, 15))
    assert not polygons_overlap(_square(0, 0, 10, 10), _square(11, 0, 20, 10))
    diamond = np.array([[10, 0], [20, 10], [10, 20], [0, 10]], dtype=float)
    # The corner region of the box outside the diamond: the boxes' axes alone would not separate them.
    assert not polygons_overlap(diamond, _square(16, 16, 20, 20))
    assert polygons_overlap(diamond, _square(8, 8, 12, 12))


def _person_record(tmp_path: Path) -> tuple[PoseRecord, np.ndarray]:
    """A 400x300 image with 14 joints inside the box x 150-250, y 60-240."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(300, 400, 3), dtype=np.uint8)
    path = tmp_path / "person.png"
    cv2.imwrite(str(path), image)
    joints = np.column_stack([rng.uniform(150, 250, 14), rng.uniform(60, 240, 14)])
    annotated = np.ones(14, bool)
    return PoseRecord(path, joints, annotated, annotated.copy(), LSP14, "test person"), joints


def test_background_crop_holds_no_annotated_joint_and_has_zero_targets(tmp_path: Path):
    record, joints = _person_record(tmp_path)
    augment = resolve_augment(AugmentConfig(preset="strong"))
    ds = PoseDataset([record] * 60, LSP14, SETTINGS, augment=augment, sample_mode="background")
    usable = 0
    for i in range(len(ds)):
        sample = ds[i]
        assert sample["presence"].item() == 0.0
        assert torch.count_nonzero(sample["target"]) == 0
        if sample["presence_weight"].item() == 0:
            assert torch.count_nonzero(sample["target_weight"]) == 0  # given up: out of every loss
            continue
        usable += 1
        assert torch.all(sample["target_weight"] == 1)  # zero heatmaps are pushed to zero on every joint
        in_crop = apply_affine(joints, sample["meta"]["matrix"])
        inside = (in_crop >= 0).all(1) & (in_crop[:, 0] <= INPUT[0]) & (in_crop[:, 1] <= INPUT[1])
        assert not inside.any(), f"sample {i}: annotated joint inside a background crop"
        assert not sample["meta"]["annotated"].any()
    assert usable >= 40  # a 400x300 image has room around a 100x180 person


def test_person_samples_keep_heatmaps_or_are_presence_only(tmp_path: Path):
    record, _ = _person_record(tmp_path)
    pose = PoseDataset([record], LSP14, SETTINGS)[0]
    assert pose["presence"].item() == 1.0 and pose["presence_weight"].item() == 1.0
    assert torch.all(pose["target_weight"] == 1) and pose["target"].max() > 0.5
    only = PoseDataset([record], LSP14, SETTINGS, heatmap_loss=False, zoom_out=(2.0, 2.0))[0]
    assert only["presence"].item() == 1.0 and torch.count_nonzero(only["target_weight"]) == 0
    # Zoomed out 2x: the joints' spread in the crop halves.
    spread = np.ptp(pose["meta"]["joints_crop_px"], axis=0)
    assert np.allclose(np.ptp(only["meta"]["joints_crop_px"], axis=0), spread / 2, rtol=1e-6)


def test_background_crop_gives_up_when_the_person_fills_the_image():
    rng = np.random.default_rng(1)
    assert background_crop((100, 100), [np.array([-5.0, -5.0, 105.0, 105.0])], rng, INPUT, 100.0) is None


def test_crop_is_clear_sees_rotated_crops():
    from rehab.core.transforms import affine_matrix

    box = np.array([100.0, 100.0, 120.0, 120.0])
    # A 40 px crop centred 45 px left of the box: clear upright, and still clear turned by 45 degrees.
    upright = affine_matrix(np.array([65.0, 110.0]), np.array([0.2, 0.2]), 0.0, INPUT)
    assert crop_is_clear(upright, INPUT, [box])
    turned = affine_matrix(np.array([65.0, 110.0]), np.array([0.2, 0.2]), 45.0, INPUT)
    assert crop_is_clear(turned, INPUT, [box])
    near = affine_matrix(np.array([85.0, 110.0]), np.array([0.2, 0.2]), 0.0, INPUT)
    assert not crop_is_clear(near, INPUT, [box])


def test_synthetic_images_cover_black_white_and_noise_and_are_seeded():
    ds = SyntheticDataset(200, 14, INPUT, HEATMAP, seed=3)
    a, b = ds[7], ds[7]
    assert torch.equal(a["image"], b["image"])
    assert a["image"].shape == (3, INPUT[1], INPUT[0]) and a["image"].dtype == torch.uint8
    assert a["presence"].item() == 0.0 and torch.count_nonzero(a["target"]) == 0 and torch.all(a["target_weight"] == 1)
    ds.set_epoch(1)
    assert not torch.equal(ds[7]["image"], a["image"])  # drawn anew each training epoch
    evals = SyntheticDataset(200, 14, INPUT, HEATMAP, seed=3, train=False)
    assert not torch.equal(evals[7]["image"], a["image"])  # evaluation images differ from training images
    lots = SyntheticDataset(600, 14, INPUT, HEATMAP, seed=3)
    extremes = [(int(s["image"].min()), int(s["image"].max())) for s in (lots[i] for i in range(600))]
    assert (0, 0) in extremes and (255, 255) in extremes  # all-black and all-white frames are among them
    rng = np.random.default_rng(0)
    for kind in SYNTHETIC_KINDS:
        image = synthetic_image(rng, INPUT, kind)
        assert image.shape == (INPUT[1], INPUT[0], 3) and image.dtype == np.uint8
    assert synthetic_image(rng, INPUT, "static").std() > 50  # static noise is noise


def _config(presence: bool = True) -> Config:
    cfg = Config()
    cfg.model.backbone_init = "random"
    cfg.model.input_size, cfg.model.heatmap_size = list(INPUT), list(HEATMAP)
    cfg.model.deconv_filters = 16
    cfg.model.presence_head = presence
    return resolve(cfg)


def test_presence_head_output_and_plain_forward():
    cfg = _config()
    model = build_model(cfg.model, init_backbone=False).eval()
    x = torch.randn(3, 3, INPUT[1], INPUT[0])
    with torch.no_grad():
        heatmaps = model(x)
        both = model(x, with_presence=True)
        wrapped = WithPresence(model)(x)
    assert heatmaps.shape == (3, 14, HEATMAP[1], HEATMAP[0])
    assert both[1].shape == (3, 1)
    assert torch.equal(both[0], heatmaps) and torch.equal(wrapped[1], both[1])
    plain = build_model(_config(presence=False).model, init_backbone=False)
    with pytest.raises(ValueError, match="no presence head"):
        plain(x, with_presence=True)


@pytest.mark.parametrize("source, conv", [("backbone", 0), ("backbone", 8), ("deconv", 0), ("deconv", 8)])
def test_presence_head_reads_the_feature_map_it_is_configured_for(source: str, conv: int):
    cfg = _config()
    cfg.model.presence_input, cfg.model.presence_conv = source, conv
    model = build_model(resolve(cfg).model, init_backbone=False).eval()
    assert (model.presence.conv is not None) == (conv > 0)
    seen = []
    hook = model.presence.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape))
    with torch.no_grad():
        _, logits = model(torch.randn(2, 3, INPUT[1], INPUT[0]), with_presence=True)
    hook.remove()
    assert logits.shape == (2, 1)
    # the deconvolution map is the heatmaps' resolution, the backbone's is 1/32 of the input
    expected_hw = tuple(HEATMAP[::-1]) if source == "deconv" else (INPUT[1] // 32, INPUT[0] // 32)
    assert tuple(seen[0][2:]) == expected_hw
    channels = seen[0][1]
    if source == "deconv":
        assert channels == cfg.model.deconv_filters
    assert model.presence.mlp[0].in_features == (conv or channels) * 2  # average and max pooling


def test_presence_tower_starts_as_the_backbone_tail_and_leaves_the_pose_path_alone(tmp_path: Path):
    pose_cfg = _config(presence=False)
    pose = build_model(pose_cfg.model, init_backbone=False)
    ckpt = tmp_path / "pose.pt"
    torch.save({"model": pose.state_dict()}, ckpt)
    cfg = _config()
    cfg.model.presence_tower_blocks = 3
    tower_model = build_model(resolve(cfg).model, init_backbone=False)
    load_weights(tower_model, ckpt)  # the head and its tower are new: the tower is copied from the backbone
    plain = build_model(_config().model, init_backbone=False)
    plain.load_state_dict({k: v for k, v in tower_model.state_dict().items() if ".tower." not in k})
    x = torch.randn(2, 3, INPUT[1], INPUT[0])
    tower_model.eval(), plain.eval(), pose.eval()
    with torch.no_grad():
        heat_t, logit_t = tower_model(x, with_presence=True)
        heat_p, logit_p = plain(x, with_presence=True)
        heat_pose = pose(x)
        assert torch.allclose(heat_t, heat_pose, atol=1e-6) and torch.allclose(tower_model(x), heat_pose, atol=1e-6)
        # before training the tower computes what the backbone's tail does: same presence as a head on it
        assert torch.allclose(logit_t, logit_p, atol=1e-5)
        for p in tower_model.presence.tower.parameters():
            p.add_(0.1)
        heat_after, logit_after = tower_model(x, with_presence=True)
    assert torch.allclose(heat_after, heat_pose, atol=1e-6), "changing the tower must not change the heatmaps"
    assert not torch.allclose(logit_after, logit_t)
    assert all(n.startswith("presence.") for n, _ in tower_model.named_parameters() if ".tower." in n)


def test_bad_presence_head_options_are_refused():
    cfg = _config()
    cfg.model.presence_input = "heatmaps"
    with pytest.raises(ConfigError, match="model.presence_input"):
        resolve(cfg)
    cfg = _config()
    cfg.model.presence_conv = -1
    with pytest.raises(ConfigError, match="presence_conv must be >= 0"):
        resolve(cfg)
    cfg = _config()
    cfg.model.presence_tower_blocks, cfg.model.presence_input = 2, "deconv"
    with pytest.raises(ConfigError, match="presence_tower_blocks needs model.presence_input: backbone"):
        resolve(cfg)
    cfg = _config()
    cfg.model.presence_tower_blocks = 99
    with pytest.raises(ConfigError, match="presence_tower_blocks=99"):
        build_model(resolve(cfg).model, init_backbone=False)


def test_presence_loss_is_weighted_bce():
    loss = PresenceLoss()
    logits = torch.tensor([[0.0], [2.0], [-3.0]])
    target = torch.tensor([1.0, 0.0, 0.0])
    expected = (np.log(2.0) + np.log1p(np.exp(2.0))) / 2  # the third sample has weight 0
    value = loss(logits, target, torch.tensor([1.0, 1.0, 0.0]))
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert loss(logits, target, torch.zeros(3)).item() == 0.0


def test_pose_checkpoint_loads_into_a_model_with_a_new_presence_head(tmp_path: Path):
    pose_cfg = _config(presence=False)
    pose = build_model(pose_cfg.model, init_backbone=False)
    path = tmp_path / "pose.pt"
    torch.save({"model": pose.state_dict()}, path)
    with_head = build_model(_config().model, init_backbone=False)
    load_weights(with_head, path)
    assert torch.equal(with_head.final.weight, pose.final.weight)
    state = pose.state_dict()
    state["unexpected.weight"] = torch.zeros(1)
    torch.save({"model": state}, path)
    with pytest.raises(ValueError, match="do not fit"):
        load_weights(with_head, path)


def test_presence_head_lr_is_its_own_parameter_group_through_the_schedule():
    cfg = _config()
    cfg.optim.lr, cfg.optim.presence_head_lr = 1e-5, 1e-3
    cfg.optim.lr_milestones, cfg.optim.lr_milestones_base_epochs, cfg.train.epochs = [2], 4, 4
    cfg = resolve(cfg)
    model = build_model(cfg.model, init_backbone=False)
    optimizer = build_optimizer(model, cfg)
    head = {id(p) for p in model.presence.parameters()}
    assert [len(g["params"]) for g in optimizer.param_groups][1] == len(head)
    assert {id(p) for p in optimizer.param_groups[1]["params"]} == head
    assert [g["lr"] for g in optimizer.param_groups] == [1e-5, 1e-3]
    scheduler = build_scheduler(optimizer, cfg)
    set_scheduled_lr(optimizer, scheduler, cfg, 3)  # after the milestone: both x 0.1
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1e-6, 1e-4])


@pytest.mark.parametrize("source, message", [
    (SourceConfig(kind="video", path="v.mp4", sample="background"), "person_box_xyxy"),
    (SourceConfig(kind="synthetic", sample="person"), "sample: background"),
    (SourceConfig(kind="video", path="v.mp4", person_box_xyxy=[0, 0, 1, 1]), "heatmap_loss: false"),
    (SourceConfig(kind="lsp", sample="nobody"), "sample must be one of"),
    (SourceConfig(kind="lsp", zoom_out=[2.0, 1.0]), "zoom_out"),
])
def test_bad_presence_sources_are_refused(source: SourceConfig, message: str):
    cfg = Config()
    cfg.data.train = [source]
    with pytest.raises(ConfigError, match=message):
        resolve(cfg)


def test_presence_validation_needs_a_presence_head():
    cfg = Config()
    cfg.data.presence_val = [SourceConfig(kind="synthetic", sample="background")]
    with pytest.raises(ConfigError, match="presence_head"):
        resolve(cfg)


def test_letterbox_bars_keep_a_centred_band_and_black_out_the_rest():
    from train.presence import letterbox_bars

    image = np.full((60, 40, 3), 200, np.uint8)
    for seed in range(20):
        out = letterbox_bars(image, np.random.default_rng(seed))
        rows, cols = np.nonzero(out[:, :, 0])
        kept_rows, kept_cols = np.unique(rows), np.unique(cols)
        full_rows, full_cols = len(kept_rows) == 60, len(kept_cols) == 40
        assert full_rows != full_cols  # bars on exactly one axis
        kept = kept_cols if full_rows else kept_rows
        size = 40 if full_rows else 60
        assert abs(kept.min() - (size - 1 - kept.max())) <= 1  # centred
        assert np.all(out[rows, cols] == 200)


def test_freeze_pose_needs_a_presence_head():
    cfg = Config()
    cfg.train.freeze_pose = True
    with pytest.raises(ConfigError, match="freeze_pose"):
        resolve(cfg)
