"""The rehab ONNX metadata schema: round trip, validation and the errors a user sees."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rehab.core.skeleton import LSP14, MPII16
from rehab.runtime.metadata import KEY_PREFIX, SCHEMA_VERSION, ModelInfo, from_metadata_props, to_metadata_props


def make_info(**changes) -> ModelInfo:
    info = ModelInfo(name="m", joint_names=MPII16.joints, limbs=MPII16.limbs, flip_pairs=MPII16.flip_pairs,
                     input_size=(192, 256), heatmap_size=(48, 64), heatmap_stride=4.0, mean=(0.485, 0.456, 0.406),
                     std=(0.229, 0.224, 0.225), backbone="resnet50", training={"data": {"train": ["mpii"]}, "epochs": 140},
                     metrics={"pckh@0.5": 89.0}, source_sha256="ab" * 32, exported_at="2026-11-26T00:00:00+00:00",
                     code_version="0.1.0+gabc", flip_test=True)
    return info.replace(**changes)


def test_round_trip_keeps_every_field():
    info = make_info(variant={"drift_pp": -0.4, "eval": {"images": 300}}, precision="int8")
    props = to_metadata_props(info)
    assert all(k.startswith(KEY_PREFIX) and isinstance(v, str) for k, v in props.items())
    assert props["rehab.channel_order"] == "RGB"  # plain strings stay readable
    assert json.loads(props["rehab.input_size"]) == [192, 256]
    assert json.loads(props["rehab.schema_version"]) == SCHEMA_VERSION
    back = from_metadata_props(props, "x.onnx")
    assert back == info
    assert back.aspect_ratio == pytest.approx(0.75)
    assert back.flip_test is True and back.variant["drift_pp"] == -0.4


def test_flip_permutation_swaps_left_and_right():
    info = make_info()
    perm = info.flip_permutation
    assert perm[MPII16.index("left_knee")] == MPII16.index("right_knee")
    assert perm[MPII16.index("pelvis")] == MPII16.index("pelvis")
    np.testing.assert_array_equal(perm[perm], np.arange(16))
    np.testing.assert_array_equal(perm, MPII16.flip_permutation)


def test_missing_key_names_the_model_and_the_key():
    props = to_metadata_props(make_info())
    del props["rehab.mean"]
    with pytest.raises(ValueError, match=r"model a/b.onnx has no rehab metadata \(key rehab.mean\); export it with `rehab export`"):
        from_metadata_props(props, "a/b.onnx")
    with pytest.raises(ValueError, match=r"has no rehab metadata \(key rehab\.\w+ and \d+ more\)"):
        from_metadata_props({}, "c.onnx")


def test_invalid_values_are_rejected_with_the_key():
    props = to_metadata_props(make_info())
    bad_json = dict(props, **{"rehab.std": "[0.2, 0.2"})
    with pytest.raises(ValueError, match="rehab.std is not valid JSON"):
        from_metadata_props(bad_json, "m.onnx")
    newer = dict(props, **{"rehab.schema_version": str(SCHEMA_VERSION + 1)})
    with pytest.raises(ValueError, match="newer than this runtime"):
        from_metadata_props(newer, "m.onnx")
    wrong_stride = dict(props, **{"rehab.heatmap_stride": "8.0"})
    with pytest.raises(ValueError, match="invalid rehab metadata: heatmap_stride"):
        from_metadata_props(wrong_stride, "m.onnx")


@pytest.mark.parametrize("changes, match", [
    ({"joint_names": ()}, "joint_names"),
    ({"limbs": (("left_knee", "nose"),)}, "limb"),
    ({"flip_pairs": ((0, 0),)}, "flip_pairs"),
    ({"flip_pairs": ((0, 99),)}, "flip_pairs"),
    ({"std": (0.2, 0.0, 0.2)}, "std"),
    ({"channel_order": "YUV"}, "channel_order"),
    ({"precision": "int4"}, "precision"),
    ({"input_size": (0, 256)}, "input_size"),
])
def test_model_info_validates(changes, match):
    with pytest.raises(ValueError, match=match):
        make_info(**changes)


def test_lsp_joint_set_fits():
    info = make_info(joint_names=LSP14.joints, limbs=LSP14.limbs, flip_pairs=LSP14.flip_pairs)
    assert info.num_joints == 14


def test_graph_rewrites_round_trip_and_older_files_without_the_key_load():
    rewrites = {"subpixel_deconv": {"deconvolutions": 3, "pointwise_fused": 1}}
    props = to_metadata_props(make_info(graph_rewrites=rewrites))
    assert json.loads(props["rehab.graph_rewrites"]) == rewrites
    assert from_metadata_props(props, "x.onnx").graph_rewrites == rewrites
    # A file exported before the key existed (same schema version) loads, with no rewrites recorded.
    older = {k: v for k, v in props.items() if k != "rehab.graph_rewrites"}
    info = from_metadata_props(older, "old.onnx")
    assert info.graph_rewrites == {} and info == make_info()
    with pytest.raises(ValueError, match="graph_rewrites must be a JSON object"):
        from_metadata_props(dict(props, **{"rehab.graph_rewrites": "[1]"}), "m.onnx")


def test_presence_keys_round_trip_and_are_absent_without_presence():
    plain = to_metadata_props(make_info())
    assert not any("presence" in k for k in plain)  # a model without the output carries no presence keys
    assert from_metadata_props(plain).has_presence is False
    assert from_metadata_props(plain).presence_threshold is None
    info = make_info(presence_output="presence", presence_threshold=0.35)
    props = to_metadata_props(info)
    assert props["rehab.presence_output"] == "presence"
    assert json.loads(props["rehab.presence_threshold"]) == 0.35
    back = from_metadata_props(props, "x.onnx")
    assert back == info and back.has_presence and back.presence_threshold == 0.35
    assert "rehab.presence_acquire_threshold" not in props and back.presence_acquire_threshold is None
    both = make_info(presence_output="presence", presence_threshold=0.1, presence_acquire_threshold=0.3)
    props = to_metadata_props(both)
    assert json.loads(props["rehab.presence_acquire_threshold"]) == 0.3
    assert from_metadata_props(props, "x.onnx") == both


@pytest.mark.parametrize("changes, match", [
    ({"presence_output": "presence", "presence_threshold": 1.5}, "probability"),
    ({"presence_output": "presence", "presence_threshold": 0.0}, "probability"),
    ({"presence_threshold": 0.5}, "no presence output"),
    ({"presence_output": "presence", "presence_threshold": 0.3, "presence_acquire_threshold": 0.2}, r"\[presence_thr"),
    ({"presence_output": "presence", "presence_acquire_threshold": 0.5}, "presence_threshold is not"),
])
def test_presence_threshold_is_validated(changes, match):
    with pytest.raises(ValueError, match=match):
        make_info(**changes)
