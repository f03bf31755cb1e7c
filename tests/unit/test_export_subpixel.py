"""The sub-pixel export pass: stride-2 4x4 ConvTranspose -> 2x2 Convs + DepthToSpace, same outputs in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from typer.testing import CliRunner

from export.cli import app
from export.exporter import ExportOptions, export_model, variant_path
from export.onnx_export import torch_to_onnx
from export.subpixel import (
    CHECK_TOLERANCE,
    SubpixelError,
    check_equivalent,
    count_rewritable,
    rewrite_graph,
    rewrite_with_report,
    subpixel_rewrite,
)
from rehab.core.skeleton import LSP14
from rehab.runtime.metadata import ModelInfo
from rehab.runtime.model import PoseModel

INPUT_PX = 32  # tiny: the test is about the graph, not the network
CHANNELS = 8


class TinyHead(torch.nn.Module):
    """A strided Conv, then ConvTranspose(k4, s2, p1) -> ReLU (-> 1x1 Conv to the joints' heatmaps)."""

    def __init__(self, pointwise: bool, joints: int = LSP14.num_joints, deconv_bias: bool = True) -> None:
        super().__init__()
        self.down = torch.nn.Conv2d(3, CHANNELS, 3, stride=4, padding=1)
        self.up = torch.nn.ConvTranspose2d(CHANNELS, CHANNELS if pointwise else joints, 4, stride=2, padding=1,
                                           bias=deconv_bias)
        self.final = torch.nn.Conv2d(CHANNELS, joints, 1) if pointwise else None

    def forward(self, x):
        y = torch.relu(self.up(torch.relu(self.down(x))))
        return self.final(y) if self.final is not None else y


def make_model(pointwise: bool, seed: int = 0, **kwargs) -> TinyHead:
    torch.manual_seed(seed)
    return TinyHead(pointwise, **kwargs).eval()


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("pointwise, bias", [(True, True), (False, True), (False, False)])
def test_rewritten_export_matches_original_and_torch(pointwise, bias):
    net = make_model(pointwise, deconv_bias=bias)
    original = torch_to_onnx(net, (INPUT_PX, INPUT_PX))
    assert ops(original).count("ConvTranspose") == 1 and count_rewritable(original) == 1

    rewritten, report = rewrite_with_report(original)
    assert "ConvTranspose" not in ops(rewritten) and count_rewritable(rewritten) == 0
    assert ops(rewritten).count("DepthToSpace") == 1 and ops(rewritten).count("Concat") == 1
    assert report.deconvolutions == 1 and report.pointwise_fused == int(pointwise)
    # With the 1x1 Conv moved before the interleaving it runs once per phase: 4 pointwise + 4 phase Convs.
    assert ops(rewritten).count("Conv") == 1 + 4 + (4 if pointwise else 0)
    assert report.max_abs_diff is not None and report.max_abs_diff <= CHECK_TOLERANCE
    assert ops(original).count("ConvTranspose") == 1  # the input model is left alone
    assert original.metadata_props == rewritten.metadata_props

    x = np.random.default_rng(1).standard_normal((3, 3, INPUT_PX, INPUT_PX)).astype(np.float32)
    with torch.no_grad():
        reference = net(torch.from_numpy(x)).numpy()
    before, after = run(original, x), run(rewritten, x)
    assert after.shape == reference.shape == (3, LSP14.num_joints, INPUT_PX // 2, INPUT_PX // 2)
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)
    np.testing.assert_allclose(after, reference, rtol=0, atol=1e-5)
    assert np.abs(reference).max() > 0.01  # a real signal, not zeros


def test_unsupported_deconvolutions_stay_and_nothing_to_do_returns_a_copy():
    rng = np.random.default_rng(0)
    w3 = numpy_helper.from_array(rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32), "w3")
    nodes = [helper.make_node("ConvTranspose", ["input", "w3"], ["heatmaps"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[1, 1, 1, 1], output_padding=[1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 4, 6, 6])],
                              [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["n", 4, 12, 12])], [w3])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert count_rewritable(model) == 0
    same, report = rewrite_with_report(model)
    assert ops(same) == ["ConvTranspose"] and report.deconvolutions == 0 and report.max_abs_diff is None
    assert same is not model and same == model


def test_a_rewrite_that_does_not_match_is_refused():
    original = torch_to_onnx(make_model(pointwise=True), (INPUT_PX, INPUT_PX))
    broken, _ = rewrite_graph(original)
    phase = next(i for i in broken.graph.initializer if i.name.endswith("_subpixel_w01"))
    phase.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(phase) * 1.01, phase.name))
    with pytest.raises(SubpixelError, match=r"does not compute what the original graph computes.*--no-subpixel"):
        check_equivalent(original, broken)
    assert check_equivalent(original, subpixel_rewrite(original)) <= CHECK_TOLERANCE


def test_cli_documents_the_option():
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200", "TERMINAL_WIDTH": "200"})
    assert result.exit_code == 0
    assert "--subpixel" in result.output and "--no-subpixel" in result.output
    assert ExportOptions().subpixel is True


def tiny_info() -> ModelInfo:
    return ModelInfo(name="tiny", joint_names=LSP14.joints, limbs=LSP14.limbs, flip_pairs=LSP14.flip_pairs,
                     input_size=(INPUT_PX, INPUT_PX), heatmap_size=(INPUT_PX // 2, INPUT_PX // 2), heatmap_stride=2.0,
                     mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), backbone="tiny")


def test_exporter_writes_rewritten_fp32_and_int8_files(tmp_path: Path, shared_dir: Path, require_data):
    require_data(shared_dir / "data/lsp/joints.mat")
    net = make_model(pointwise=True)
    out = tmp_path / "tiny.onnx"
    options = ExportOptions(verify_images=2, eval_images=2, int8=True, calibration_images=2, max_int8_drop=100.0,
                            threads=1, progress=False)
    result = export_model(net, tiny_info(), out, shared_dir, options)
    assert result.agreement.max_abs_diff <= result.agreement.tolerance  # verified against torch as written

    fp32 = onnx.load(str(out))
    assert "ConvTranspose" not in ops(fp32) and "DepthToSpace" in ops(fp32)
    info = PoseModel.load(out, providers="cpu", threads=1).info
    recorded = info.graph_rewrites["subpixel_deconv"]
    assert recorded["deconvolutions"] == 1 and recorded["pointwise_fused"] == 1
    assert recorded["check"]["max_abs_diff"] <= recorded["check"]["tolerance"]
    x = np.random.default_rng(2).standard_normal((2, 3, INPUT_PX, INPUT_PX)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(run(fp32, x), net(torch.from_numpy(x)).numpy(), rtol=0, atol=1e-5)

    int8_path = variant_path(out, "int8")
    int8 = onnx.load(str(int8_path))
    assert "ConvTranspose" not in ops(int8) and "DepthToSpace" in ops(int8)
    # Every convolution, the former deconvolution's phases included, now has int8 weights.
    floats = {i.name for i in int8.graph.initializer if i.data_type == TensorProto.FLOAT}
    assert all(n.input[1] not in floats for n in int8.graph.node if n.op_type == "Conv")
    int8_info = PoseModel.load(int8_path, providers="cpu", threads=1).info
    assert int8_info.precision == "int8" and int8_info.graph_rewrites == info.graph_rewrites


def test_exporter_without_subpixel_keeps_the_deconvolution(tmp_path: Path, shared_dir: Path, require_data):
    require_data(shared_dir / "data/lsp/joints.mat")
    out = tmp_path / "plain.onnx"
    export_model(make_model(pointwise=False), tiny_info(), out, shared_dir,
                 ExportOptions(verify_images=2, eval_images=0, subpixel=False, threads=1, progress=False))
    assert ops(onnx.load(str(out))).count("ConvTranspose") == 1
    assert PoseModel.load(out, providers="cpu", threads=1).info.graph_rewrites == {}
