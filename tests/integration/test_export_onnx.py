"""Export of a small trained network: ONNX Runtime vs torch on real LSP images, metadata round trip, variants.

The network is train/'s real architecture (MobileNetV2 with the ImageNet weights from ../shared, a narrow
deconvolution head, 128x128 input). Its head is trained for a few dozen steps on the frozen backbone features of
64 real LSP crops, a few seconds on 2 cores, so its heatmaps have real peaks and its PCK is far above chance.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import rehab  # noqa: E402
from export.cli import app  # noqa: E402
from export.describe import info_from_config  # noqa: E402
from rehab.core.files import sha256_file  # noqa: E402
from export.exporter import DriftError, ExportOptions, export_model, variant_path  # noqa: E402
from export.verify import FP32_HEATMAP_TOLERANCE  # noqa: E402
from rehab.core.skeleton import LSP14  # noqa: E402
from rehab.runtime.model import PoseModel, person_center_scale, postprocess, preprocess  # noqa: E402
from train.config import Config, SourceConfig, resolve, to_dict  # noqa: E402
from train.dataset import CropSettings, PoseDataset, read_source  # noqa: E402
from train.loss import JointsMSELoss  # noqa: E402
from train.model import build_model  # noqa: E402
from train.preprocess import normalize_tensor  # noqa: E402
from tests.default_model import load_default_fp32_model  # noqa: E402

WEIGHTS = "weights/mobilenet_v2-b0353104.pth"
INPUT_PX, HEATMAP_PX = 128, 32
TRAIN_IMAGES, STEPS, BATCH, LR = 64, 60, 16, 2e-3
# Chance level of this protocol is about 1-2 PCK points (an untrained head); a few dozen steps reach ~15.
TRAINED_MIN_PCK = 6.0
THREADS = 2
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(shared_dir: Path, require_data) -> tuple[torch.nn.Module, Config]:
    require_data(shared_dir / "data/lsp/joints.mat")
    require_data(shared_dir / WEIGHTS)
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    cfg = Config()
    cfg.data.root = str(shared_dir)
    cfg.model.input_size, cfg.model.heatmap_size = [INPUT_PX, INPUT_PX], [HEATMAP_PX, HEATMAP_PX]
    cfg.model.deconv_filters = 64
    cfg.data.train = [SourceConfig(kind="lsp", path="data/lsp", split="train", limit=TRAIN_IMAGES)]
    cfg = resolve(cfg)
    records = read_source(cfg, cfg.data.train[0])
    dataset = PoseDataset(records, LSP14, CropSettings((INPUT_PX, INPUT_PX), (HEATMAP_PX, HEATMAP_PX), cfg.model.sigma,
                                                      cfg.data.box_margin, cfg.data.box_padding))
    samples = [dataset[i] for i in range(len(dataset))]
    images = torch.stack([s["image"] for s in samples])
    targets = torch.stack([s["target"] for s in samples])
    weights = torch.stack([s["target_weight"] for s in samples])
    model = build_model(cfg.model, data_root=cfg.data.root).eval()
    with torch.no_grad():
        features = model.backbone(normalize_tensor(images, cfg.model))
    head = list(model.head.parameters()) + list(model.final.parameters())
    optimizer = torch.optim.Adam(head, lr=LR)
    loss_fn = JointsMSELoss()
    generator = torch.Generator().manual_seed(0)
    model.head.train()
    for _ in range(STEPS):
        idx = torch.randint(0, len(samples), (BATCH,), generator=generator)
        loss = loss_fn(model.final(model.head(features[idx])), targets[idx], weights[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), cfg


def test_onnx_runtime_matches_torch_on_real_images(trained, tmp_path: Path, shared_dir: Path):
    model, cfg = trained
    info = info_from_config(cfg, {}, name="tiny")
    out = tmp_path / "tiny.onnx"
    result = export_model(model, info, out, shared_dir, ExportOptions(verify_images=8, eval_images=0, progress=False))
    assert result.agreement.max_abs_diff <= FP32_HEATMAP_TOLERANCE and result.agreement.keypoint_agreement == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.onnx"]  # one self-contained file

    proto = onnx.load(str(out))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    ops = {n.op_type for n in proto.graph.node}
    assert not ops & {"BatchNormalization", "Identity"}
    # The deconvolutions are in sub-pixel form by default (export.subpixel), recorded in the metadata.
    assert "ConvTranspose" not in ops and "DepthToSpace" in ops
    assert result.info.graph_rewrites["subpixel_deconv"]["deconvolutions"] == cfg.model.deconv_layers
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch

    # Independently of export's own check: the public API on real images against torch + the same decoding.
    pose_model = PoseModel.load(out, providers="cpu", threads=THREADS)
    records = read_source(cfg, SourceConfig(kind="lsp", path="data/lsp", split="test", limit=6))
    images = [cv2.imread(str(r.image_path)) for r in records]
    poses = pose_model.predict_batch(images)  # batch of 6 through the dynamic axis
    for image, pose in zip(images, poses):
        center, scale = person_center_scale(image.shape, None, pose_model.info)
        tensor, affine = preprocess(image, center, scale, pose_model.info)
        with torch.no_grad():
            reference = postprocess(model(torch.from_numpy(tensor)).numpy(), affine, pose_model.info)
        np.testing.assert_allclose(pose.keypoints_px, reference.keypoints_px, atol=1e-3)
        np.testing.assert_allclose(pose.scores, reference.scores, atol=FP32_HEATMAP_TOLERANCE)
        assert pose.scores.max() > 0.1  # trained: real peaks, not a flat map

    # ONNX Runtime's full optimisation leaves only fused convolutions and activations.
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(out), opts, providers=["CPUExecutionProvider"])
    optimised = {n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node}
    assert optimised <= {"Conv", "FusedConv", "Clip", "Relu", "Add", "Concat", "DepthToSpace"}, optimised


def test_metadata_round_trip_via_checkpoint_and_cli(trained, tmp_path: Path, shared_dir: Path):
    model, cfg = trained
    ckpt = tmp_path / "best.pt"
    torch.save({"model": model.state_dict(), "config": to_dict(cfg), "epoch": 4, "best_metric": 15.5,
                "torch_version": torch.__version__}, ckpt)
    metrics_file = tmp_path / "metrics.json"
    metrics_file.write_text(json.dumps({"lsp_test_pck@0.2": 15.0}))
    out = tmp_path / "exported" / "model.onnx"
    run = CliRunner().invoke(app, [str(ckpt), "--output", str(out), "--data-root", str(shared_dir), "--verify-images", "4",
                                   "--eval-images", "16", "--metrics", str(metrics_file), "--no-progress"])
    assert run.exit_code == 0, run.output
    assert "ONNX Runtime vs torch" in run.output and "fp32" in run.output

    info = PoseModel.load(out, providers="cpu", threads=THREADS).info
    assert info.joint_names == LSP14.joints and info.limbs == LSP14.limbs and info.flip_pairs == LSP14.flip_pairs
    assert info.input_size == (INPUT_PX, INPUT_PX) and info.heatmap_size == (HEATMAP_PX, HEATMAP_PX)
    assert info.heatmap_stride == INPUT_PX / HEATMAP_PX
    assert info.mean == tuple(cfg.model.mean_rgb) and info.std == tuple(cfg.model.std_rgb)
    assert info.channel_order == "RGB" and info.pixel_range == 255.0 and info.sigma == cfg.model.sigma
    assert info.backbone == "mobilenet_v2" and info.precision == "fp32"
    assert info.source_sha256 == sha256_file(ckpt)
    assert info.metrics["lsp_test_pck@0.2"] == 15.0 and info.metrics["val_pck@0.2"] == 15.5
    assert info.training["data"]["train"] == [dataclasses.asdict(s) for s in cfg.data.train]
    assert info.training["epochs_done"] == 5
    assert info.code_version.startswith(rehab.__version__)
    assert dt.datetime.fromisoformat(info.exported_at).tzinfo is not None
    assert info.variant["verified_against_torch"]["images"] == 4
    assert info.variant["eval"]["images"] == 16 and 0 <= info.variant["eval"]["pck@0.2"] <= 100
    assert info.graph_rewrites["subpixel_deconv"]["deconvolutions"] == cfg.model.deconv_layers  # on by default

    missing = CliRunner().invoke(app, [str(tmp_path / "nope.pt"), "--data-root", str(shared_dir)])
    assert missing.exit_code == 1 and "checkpoint not found" in missing.output


def test_int8_export_of_trained_model_reports_drift(trained, tmp_path: Path, shared_dir: Path):
    model, cfg = trained
    out = tmp_path / "tiny.onnx"
    result = export_model(model, info_from_config(cfg, {}, name="tiny"), out, shared_dir,
                          ExportOptions(verify_images=4, eval_images=48, int8=True, calibration_images=32,
                                        max_int8_drop=100.0, progress=False))
    assert result.fp32.pck > TRAINED_MIN_PCK
    (int8,) = result.variants
    assert int8.precision == "int8" and int8.written and not int8.forced
    assert np.isfinite(int8.drift_pp) and int8.drift_pp == pytest.approx(int8.pck - result.fp32.pck)
    assert "int8" in result.table() and f"{int8.drift_pp:+.2f}" in result.table()
    path = variant_path(out, "int8")
    # The deconvolutions are quantised too (sub-pixel form): every weight is int8, the file about 4x smaller.
    assert int8.path == path and path.stat().st_size < 0.4 * out.stat().st_size
    proto = onnx.load(str(path))
    ops = [n.op_type for n in proto.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    assert "ConvTranspose" not in ops and "DepthToSpace" in ops
    floats = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert all(n.input[1] not in floats for n in proto.graph.node if n.op_type == "Conv")
    info = PoseModel.load(path, providers="cpu", threads=THREADS).info
    assert info.graph_rewrites["subpixel_deconv"]["deconvolutions"] == cfg.model.deconv_layers
    assert info.precision == "int8" and info.joint_names == LSP14.joints
    assert info.variant["drift_pp"] == pytest.approx(int8.drift_pp)
    assert info.variant["pck_fp32"] == pytest.approx(result.fp32.pck)
    assert info.variant["quantization"]["format"] == "QDQ" and info.variant["quantization"]["calibration_images"] == 32
    assert info.variant["quantization"]["float_ops"] == []  # nothing stays in float in sub-pixel form


# A limit no model can meet (a loss of at most -1000 points) makes the refusal certain.
IMPOSSIBLE_DROP = -1000.0


def test_int8_beyond_the_drift_limit_is_refused(trained, tmp_path: Path, shared_dir: Path):
    model, cfg = trained
    out = tmp_path / "tiny.onnx"
    options = ExportOptions(verify_images=4, eval_images=8, fp16=True, int8=True, calibration_images=8,
                            max_int8_drop=IMPOSSIBLE_DROP, progress=False)
    with pytest.raises(DriftError, match="INT8 model not written") as err:
        export_model(model, info_from_config(cfg, {}, name="tiny"), out, shared_dir, options)
    assert np.isfinite(err.value.result.drift_pp) and not err.value.result.written
    assert [v.precision for v in err.value.export.variants] == ["fp16", "int8"]
    assert "int8 (NOT written)" in err.value.export.table()
    assert not variant_path(out, "int8").exists() and not list(tmp_path.glob("*.tmp"))
    # FP16 came before the refusal and is complete.
    fp16 = PoseModel.load(variant_path(out, "fp16"), providers="cpu", threads=THREADS).info
    assert fp16.precision == "fp16" and np.isfinite(fp16.variant["drift_pp"])
    assert fp16.variant["agreement_with_fp32"]["keypoint_agreement"] >= 0.98


def test_int8_beyond_the_drift_limit_is_written_when_forced(trained, tmp_path: Path, shared_dir: Path):
    model, cfg = trained
    out = tmp_path / "tiny.onnx"
    options = ExportOptions(verify_images=4, eval_images=8, int8=True, calibration_images=8,
                            max_int8_drop=IMPOSSIBLE_DROP, force=True, progress=False)
    forced = export_model(model, info_from_config(cfg, {}, name="tiny"), out, shared_dir, options)
    assert forced.variants[0].forced and variant_path(out, "int8").exists()
    assert "int8 (forced)" in forced.table()
    assert PoseModel.load(variant_path(out, "int8"), providers="cpu").info.variant["forced"] is True


@pytest.fixture(scope="module")
def with_presence(trained) -> tuple[torch.nn.Module, Config]:
    """The trained tiny network plus a presence head (seeded init): a two-output model to export."""
    model, cfg = trained
    cfg = resolve(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, presence_head=True)))
    torch.manual_seed(1)
    net = build_model(cfg.model, init_backbone=False)
    missing = net.load_state_dict(model.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("presence.") for k in missing)
    return net.eval(), cfg


def test_presence_model_exports_two_verified_outputs_and_variants(with_presence, tmp_path: Path, shared_dir: Path):
    model, cfg = with_presence
    info = info_from_config(cfg, {}, name="tiny-presence", presence_threshold=0.4)
    out = tmp_path / "tiny.onnx"
    result = export_model(model, info, out, shared_dir, ExportOptions(verify_images=8, eval_images=16, fp16=True,
                                                                      int8=True, calibration_images=16, force=True,
                                                                      progress=False))
    proto = onnx.load(str(out))
    outputs = {o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim] for o in proto.graph.output}
    assert list(outputs) == ["heatmaps", "presence"]
    assert isinstance(outputs["presence"][0], str) and outputs["presence"][1:] == [1]  # (N, 1), dynamic batch
    assert proto.graph.output[1].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["rehab.presence_output"] == "presence" and json.loads(meta["rehab.presence_threshold"]) == 0.4
    # Verification compared the presence logits too, on person and person-free crops.
    check = result.info.variant["presence_verified_against_torch"]
    assert check["images"] == 16 and check["max_abs_diff"] <= check["tolerance"] and check["decision_agreement"] == 1.0
    assert "ConvTranspose" not in {n.op_type for n in proto.graph.node}  # the sub-pixel pass ran on it

    image = cv2.imread(str(read_source(cfg, SourceConfig(kind="lsp", path="data/lsp", split="test", limit=1))[0]
                           .image_path))
    for variant in (out, variant_path(out, "fp16"), variant_path(out, "int8")):
        pose_model = PoseModel.load(variant, providers="cpu", threads=THREADS)
        assert pose_model.info.has_presence and pose_model.info.presence_threshold == 0.4
        pose = pose_model.predict(image)
        assert pose.presence is not None and 0.0 <= pose.presence <= 1.0
        flipped = pose_model.predict(image, flip_test=True)
        assert 0.0 <= flipped.presence <= 1.0
    fp32 = PoseModel.load(out, providers="cpu", threads=THREADS)
    center, scale = person_center_scale(image.shape, None, fp32.info)
    tensor, _ = preprocess(image, center, scale, fp32.info)
    with torch.no_grad():
        logit = float(model(torch.from_numpy(tensor), with_presence=True)[1])
        logit_mirror = float(model(torch.from_numpy(tensor[..., ::-1].copy()), with_presence=True)[1])
    assert fp32.predict(image).presence == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-4)
    # Flip test averages the two logits (not the probabilities).
    assert fp32.predict(image, flip_test=True).presence == pytest.approx(
        1 / (1 + np.exp(-(logit + logit_mirror) / 2)), abs=1e-4)
    fp16_meta = PoseModel.load(variant_path(out, "fp16"), providers="cpu").info.variant
    assert fp16_meta["presence_agreement_with_fp32"]["decision_agreement"] >= 0.98
    assert "presence_agreement_with_fp32" in PoseModel.load(variant_path(out, "int8"), providers="cpu").info.variant


def test_a_model_without_presence_has_no_presence_keys_and_poses_without_presence(trained, tmp_path: Path,
                                                                                 shared_dir: Path):
    model, cfg = trained
    out = tmp_path / "plain.onnx"
    export_model(model, info_from_config(cfg, {}, name="plain"), out, shared_dir,
                 ExportOptions(verify_images=4, eval_images=0, progress=False))
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["heatmaps"]
    loaded = PoseModel.load(out, providers="cpu")
    assert not loaded.info.has_presence and loaded.info.presence_threshold is None
    assert loaded.predict(np.zeros((120, 90, 3), np.uint8)).presence is None


def test_drift_measured_on_the_training_holdout_says_so_and_an_unknown_set_is_refused(trained, tmp_path: Path,
                                                                                      shared_dir: Path):
    """--eval-set holdout keeps LSP test for `rehab evaluate` alone: the file names LSP train im0801-im1000."""
    from export.lsp_check import eval_records

    model, cfg = trained
    out = tmp_path / "tiny.onnx"
    options = ExportOptions(verify_images=4, eval_images=8, eval_set="holdout", int8=True, calibration_images=8,
                            force=True, progress=False)
    export_model(model, info_from_config(cfg, {}, name="tiny"), out, shared_dir, options)
    for path in (out, variant_path(out, "int8")):
        assert "lsp train im0801-im1000" in PoseModel.load(path, providers="cpu").info.variant["eval"]["eval_set"]
    names = [r.image_path.name for r in eval_records(shared_dir, "holdout", 200)]
    assert names[0] == "im0801.jpg" and names[-1] == "im1000.jpg" and len(names) == 200
    with pytest.raises(ValueError, match="unknown evaluation set 'val'"):
        export_model(model, info_from_config(cfg, {}, name="tiny"), tmp_path / "x.onnx", shared_dir,
                     dataclasses.replace(options, eval_set="val"))


def test_int8_of_the_shipped_presence_model_keeps_person_free_crops_person_free(tmp_path: Path, shared_dir: Path,
                                                                               require_data):
    """Calibrated on people alone, the presence logit's INT8 range starts at 0 and every person-free crop reads
    p = 0.5 (a person). calibration_inputs adds person-free images; the check crops are another seed's."""
    from export.lsp_check import calibration_inputs, lsp_records, network_inputs, person_free_inputs
    from export.variants import quantize_int8

    require_data(shared_dir / "data/lsp/joints.mat")
    fp32 = load_default_fp32_model()
    if not fp32.info.has_presence:
        pytest.skip("the shipped model has no presence output")
    calibration = calibration_inputs(shared_dir, fp32.info, 16)
    assert len(calibration) == 24  # 16 people + 8 person-free
    out = quantize_int8(fp32.path, tmp_path / "p.int8.onnx", calibration, progress=False)
    check = np.concatenate([network_inputs(lsp_records(shared_dir, "test", 8), fp32.info),
                            person_free_inputs(fp32.info, 8)])

    def logits(path: Path) -> np.ndarray:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return sess.run(["presence"], {sess.get_inputs()[0].name: check.astype(np.float32)})[0].reshape(-1)

    ref, q = logits(fp32.path), logits(out)
    threshold = np.log(fp32.info.presence_threshold / (1 - fp32.info.presence_threshold))
    assert np.all(ref[8:] < threshold)  # the FP32 file rejects them
    assert np.all(q[8:] < threshold), q[8:]  # and so does its INT8 file
    assert np.mean((q >= threshold) == (ref >= threshold)) >= 0.9
