"""The torch-free inference API on real LSP images, with a small ONNX pose model built here with onnx.helper.

The model is a fixed random 4x4 stride-4 convolution to 14 heatmaps followed by a ConvTranspose/Conv pair:
it is no pose estimator, but it has the I/O contract of one (RGB NCHW in, (N, K, H/4, W/4) out), so every
step around ONNX Runtime (metadata, preprocessing, decoding, flip test, errors) runs for real.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from rehab.core.heatmaps import encode  # noqa: E402
from rehab.core.skeleton import LSP14  # noqa: E402
from rehab.core.transforms import apply_affine  # noqa: E402
from rehab.runtime import model as runtime_model  # noqa: E402
from rehab.runtime.metadata import ModelInfo, to_metadata_props  # noqa: E402
from rehab.runtime.model import Pose, PoseModel, infer, person_center_scale, postprocess, preprocess  # noqa: E402
from rehab.runtime.session import CPU, ModelLoadError, create_session, resolve_providers  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
INPUT_W, INPUT_H, STRIDE = 64, 96, 4
K = LSP14.num_joints


def make_info(**changes) -> ModelInfo:
    info = ModelInfo(name="tiny-test", joint_names=LSP14.joints, limbs=LSP14.limbs, flip_pairs=LSP14.flip_pairs,
                     input_size=(INPUT_W, INPUT_H), heatmap_size=(INPUT_W // STRIDE, INPUT_H // STRIDE),
                     heatmap_stride=float(STRIDE), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                     backbone="conv4x4", training={"data": "none"}, metrics={"pck": 1.0}, source_sha256="0" * 64,
                     exported_at="2026-01-01T00:00:00+00:00", code_version="test")
    return info.replace(**changes)


def make_model(path: Path, info: ModelInfo | None = None, batch: str | int = "batch") -> Path:
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.1, (8, 3, STRIDE, STRIDE)).astype(np.float32)
    w2 = rng.normal(0, 0.1, (8, 8, 2, 2)).astype(np.float32)  # ConvTranspose weight (C_in, C_out, kh, kw)
    w3 = rng.normal(0, 0.3, (K, 8, 2, 2)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["a"], kernel_shape=[STRIDE, STRIDE], strides=[STRIDE, STRIDE]),
        helper.make_node("Relu", ["a"], ["b"]),
        helper.make_node("ConvTranspose", ["b", "w2"], ["c"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["c", "w3"], ["heatmaps"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, INPUT_H, INPUT_W])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, [batch, K, INPUT_H // STRIDE, INPUT_W // STRIDE])],
        [numpy_helper.from_array(w, n) for w, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"))])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    if info is not None:
        helper.set_model_props(proto, to_metadata_props(info))
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("rt") / "tiny.onnx", make_info())


@pytest.fixture(scope="module")
def model(model_path) -> PoseModel:
    return PoseModel.load(model_path, providers="cpu", threads=1)


@pytest.fixture(scope="module")
def lsp_image(shared_dir, require_data) -> np.ndarray:
    path = require_data(shared_dir / "data/lsp/images/im1001.jpg")
    image = cv2.imread(str(path))
    assert image is not None and image.ndim == 3
    return image


def test_load_reads_metadata_and_providers(model: PoseModel):
    assert model.info == make_info()
    assert model.providers == (CPU,)
    assert "tiny-test" in repr(model)


def test_predict_whole_image_and_bbox(model: PoseModel, lsp_image: np.ndarray):
    h, w = lsp_image.shape[:2]
    pose = model.predict(lsp_image)
    assert isinstance(pose, Pose)
    assert pose.keypoints_px.shape == (K, 2) and pose.scores.shape == (K,)
    assert pose.joint_names == LSP14.joints
    # Letterboxing pads the short side only: every decoded point lies inside the padded crop's image span.
    center, scale = person_center_scale(lsp_image.shape, None, model.info)
    half = scale * 200 / 2
    assert np.all(pose.keypoints_px >= center - half - 1) and np.all(pose.keypoints_px <= center + half + 1)
    x, y, score = pose.get("left_knee")
    assert (x, y) == tuple(pose.keypoints_px[LSP14.index("left_knee")]) and score == pose.scores[LSP14.index("left_knee")]
    assert set(pose.to_dict()) == set(LSP14.joints)
    with pytest.raises(KeyError, match="pelvis"):
        pose.get("pelvis")
    box = (w * 0.25, h * 0.25, w * 0.75, h * 0.75)
    boxed = model.predict(lsp_image, bbox_xyxy=box)
    bc, bs = person_center_scale(lsp_image.shape, box, model.info)
    assert np.all(np.abs(boxed.keypoints_px - bc) <= bs * 200 / 2 + 1)
    with pytest.raises(ValueError, match="bbox_xyxy"):
        model.predict(lsp_image, bbox_xyxy=(1, 2, 3))
    with pytest.raises(ValueError, match="x2 > x1"):
        model.predict(lsp_image, bbox_xyxy=(10, 10, 5, 20))


def test_predict_batch_matches_predict(model: PoseModel, lsp_image: np.ndarray):
    h, w = lsp_image.shape[:2]
    flipped = np.ascontiguousarray(lsp_image[:, ::-1])
    boxes = [None, (0, 0, w / 2, h / 2), None]
    poses = model.predict_batch([lsp_image, lsp_image, flipped], boxes)
    for pose, image, box in zip(poses, [lsp_image, lsp_image, flipped], boxes):
        single = model.predict(image, bbox_xyxy=box)
        np.testing.assert_allclose(pose.keypoints_px, single.keypoints_px, atol=1e-6)
    with pytest.raises(ValueError, match="one entry per image"):
        model.predict_batch([lsp_image], [None, None])


def test_flip_test_averages_mirrored_heatmaps(model: PoseModel, lsp_image: np.ndarray):
    center, scale = person_center_scale(lsp_image.shape, None, model.info)
    tensor, _ = preprocess(lsp_image, center, scale, model.info)
    plain = model.heatmaps(tensor, flip_test=False)
    merged = model.heatmaps(tensor, flip_test=True)
    assert merged.shape == plain.shape and not np.allclose(merged, plain)
    # A left joint's merged map mixes in the mirrored right joint's map.
    mirrored = infer(model.session, tensor[..., ::-1].copy())[0]
    li, ri = LSP14.index("left_knee"), LSP14.index("right_knee")
    expected = (plain[0, li, :, 1:] + mirrored[ri, :, ::-1][:, :-1]) / 2
    np.testing.assert_allclose(merged[0, li, :, 1:], expected, atol=1e-6)
    assert model.predict(lsp_image, flip_test=True).num_joints == K


def test_preprocess_normalises_rgb_like_training(model: PoseModel):
    info = model.info
    image = np.zeros((INPUT_H, INPUT_W, 3), np.uint8)
    image[..., 0] = 255  # blue in BGR
    center, scale = person_center_scale(image.shape, (0, 0, INPUT_W, INPUT_H), info)
    tensor, affine = preprocess(image, np.array([INPUT_W / 2, INPUT_H / 2]), np.array([INPUT_W / 200, INPUT_H / 200]), info)
    assert tensor.shape == (1, 3, INPUT_H, INPUT_W) and tensor.dtype == np.float32
    # RGB order: channel 2 is blue = 1.0 after /255, channel 0 red = 0.
    np.testing.assert_allclose(tensor[0, 2, INPUT_H // 2, INPUT_W // 2], (1.0 - 0.406) / 0.225, rtol=1e-5)
    np.testing.assert_allclose(tensor[0, 0, INPUT_H // 2, INPUT_W // 2], (0.0 - 0.485) / 0.229, rtol=1e-5)
    np.testing.assert_allclose(affine[:, :2], np.eye(2), atol=1e-12)


def test_postprocess_maps_heatmap_peaks_back_to_image_pixels(model: PoseModel):
    info = model.info
    rng = np.random.default_rng(1)
    center, scale = np.array([300.0, 200.0]), np.array([1.2, 1.8])
    from rehab.core.transforms import affine_matrix

    affine = affine_matrix(center, scale, 0.0, info.input_size)
    crop_pts = rng.uniform([8, 8], [INPUT_W - 8, INPUT_H - 8], size=(K, 2))
    image_pts = apply_affine(crop_pts, np.linalg.inv(np.vstack([affine, [0, 0, 1]]))[:2])
    heatmaps, _ = encode(crop_pts, np.ones(K), info.heatmap_size, info.heatmap_stride, info.sigma)
    pose = postprocess(heatmaps, affine, info)
    # Argmax + quarter-pixel shift is within half a heatmap pixel, i.e. stride / 2 crop pixels.
    crop_to_image = scale[0] * 200 / INPUT_W
    assert np.abs(pose.keypoints_px - image_pts).max() <= STRIDE / 2 * crop_to_image + 1e-6
    with pytest.raises(ValueError, match=r"heatmaps must have shape \(14, 24, 16\)"):
        postprocess(heatmaps[:, :-1], affine, info)


@pytest.mark.parametrize("shape", [(40, 30), (40, 30, 1), (40, 30, 4)])
def test_grayscale_and_bgra_are_accepted(model_path: Path, shape, caplog):
    model = PoseModel.load(model_path, providers="cpu", threads=1)  # a fresh model: it says each conversion once
    image = np.random.default_rng(2).integers(0, 255, shape, dtype=np.uint8)
    with caplog.at_level(logging.INFO, logger="rehab.runtime.model"):
        pose = model.predict(image)
    assert pose.num_joints == K
    assert any("grayscale" in r.message or "alpha" in r.message for r in caplog.records)


@pytest.mark.parametrize("image, match", [
    (np.zeros((40, 30, 3), np.float32), "dtype float32"),
    (np.zeros((0, 30, 3), np.uint8), "empty"),
    (np.zeros((40, 30, 2), np.uint8), r"shape \(40, 30, 2\)"),
    (np.zeros((2, 40, 30, 3), np.uint8), r"shape \(2, 40, 30, 3\)"),
    ([[1, 2], [3, 4]], "got list"),
])
def test_bad_images_name_the_expected_shape(model: PoseModel, image, match):
    with pytest.raises(ValueError, match=match) as err:
        model.predict(image)
    assert r"(H, W, 3)" in str(err.value) and "image" in str(err.value)
    with pytest.raises(ValueError, match=r"images\[1\]"):
        model.predict_batch([np.zeros((10, 10, 3), np.uint8), image])


def test_wrong_input_size_to_the_session_is_a_clear_error(model: PoseModel):
    with pytest.raises(ValueError, match=r"must have shape \(N, 3, 96, 64\), got \(1, 3, 64, 64\)"):
        infer(model.session, np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match="must have shape"):
        infer(model.session, np.zeros((3, 96, 64), np.float32))


def test_corrupt_and_truncated_files_name_the_file(model_path: Path, tmp_path: Path):
    data = model_path.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf \x00\xff" * 50)
    for bad in (truncated, garbage):
        with pytest.raises(ModelLoadError, match="corrupt, truncated") as err:
            PoseModel.load(bad, providers="cpu")
        assert str(bad) in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        PoseModel.load(tmp_path / "missing.onnx")


def test_model_without_metadata_is_a_clear_error(tmp_path: Path):
    plain = make_model(tmp_path / "plain.onnx", info=None)
    with pytest.raises(ValueError, match=r"has no rehab metadata \(key rehab\.") as err:
        PoseModel.load(plain, providers="cpu")
    assert "rehab export" in str(err.value) and "plain.onnx" in str(err.value)


def test_metadata_that_contradicts_the_graph_is_rejected(tmp_path: Path):
    wrong = make_model(tmp_path / "wrong.onnx", make_info(input_size=(128, 96), heatmap_size=(32, 24)))
    with pytest.raises(ValueError, match="does not match its metadata"):
        PoseModel.load(wrong, providers="cpu")


def test_default_model_missing_says_how_to_build_it(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(runtime_model, "DEFAULT_MODEL_PATH", tmp_path / "default.onnx")
    with pytest.raises(FileNotFoundError, match="default model is not built yet") as err:
        PoseModel.load()
    assert "rehab export" in str(err.value)


def test_cuda_request_without_cuda_warns_and_runs_on_cpu(model_path: Path, caplog):
    with caplog.at_level(logging.WARNING, logger="rehab.runtime.session"):
        session, active = create_session(model_path, providers=["cuda", "cpu"], threads=1)
    assert active[-1] == CPU
    if "CUDAExecutionProvider" not in active:
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert any("CUDAExecutionProvider" in r.getMessage() for r in warnings)


def test_provider_resolution_and_options():
    resolved = resolve_providers(["cpu"])
    assert resolved == [(CPU, {})]
    auto = resolve_providers("auto")
    assert auto[-1][0] == CPU
    with pytest.raises(ValueError, match="cudnn_conv_algo_search"):
        resolve_providers("auto", cudnn_conv_algo_search="FAST")
    with pytest.raises(ValueError, match="threads"):
        from rehab.runtime.session import session_options

        session_options(threads=0)


def test_runtime_modules_do_not_import_torch():
    code = ("import sys, rehab; from rehab import PoseModel, Pose; import rehab.runtime.session, rehab.runtime.metadata; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
