"""The heatmap codec travels in the model metadata: written by export, read by the runtime's postprocess."""

from __future__ import annotations

import numpy as np
import pytest

from rehab.core.heatmaps import coordinate_stride, encode
from rehab.core.skeleton import LSP14
from rehab.core.transforms import DEFAULT_BOX_PADDING, SCALE_UNIT_PX
from rehab.runtime.metadata import (
    KEY_PREFIX,
    ModelInfo,
    from_metadata_props,
    to_metadata_props,
)
from rehab.runtime.model import person_center_scale, postprocess

INPUT, HEATMAP = (192, 192), (48, 48)


def _info(**changes) -> ModelInfo:
    info = ModelInfo(name="m", joint_names=LSP14.joints, limbs=LSP14.limbs, flip_pairs=LSP14.flip_pairs,
                     input_size=INPUT, heatmap_size=HEATMAP, heatmap_stride=4.0, mean=(0.485, 0.456, 0.406),
                     std=(0.229, 0.224, 0.225))
    return info.replace(**changes)


def test_codec_keys_round_trip_and_files_without_them_decode_as_before():
    info = _info(heatmap_encoding="udp", heatmap_decoding="dark", flip_shift=False)
    props = to_metadata_props(info)
    assert props[KEY_PREFIX + "heatmap_decoding"] == "dark"  # a plain string, readable in Netron
    assert from_metadata_props(props) == info
    codec_keys = {KEY_PREFIX + "heatmap_encoding", KEY_PREFIX + "heatmap_decoding"}
    old = {k: v for k, v in to_metadata_props(_info()).items() if k not in codec_keys}
    back = from_metadata_props(old)
    assert (back.heatmap_encoding, back.heatmap_decoding) == ("standard", "quarter")
    with pytest.raises(ValueError, match="heatmap_decoding one of"):
        _info(heatmap_decoding="soft_argmax")


@pytest.mark.parametrize("encoding", ["standard", "udp"])
def test_runtime_postprocess_decodes_with_the_codec_in_the_metadata(encoding):
    rng = np.random.default_rng(4)
    crop_px = rng.uniform(30, 160, (LSP14.num_joints, 2))
    hm, _ = encode(crop_px, np.ones(LSP14.num_joints), HEATMAP, coordinate_stride(INPUT, HEATMAP, encoding), 2.0)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    dark = postprocess(hm, identity, _info(heatmap_encoding=encoding, heatmap_decoding="dark"))
    quarter = postprocess(hm, identity, _info(heatmap_encoding=encoding))
    err_dark = np.abs(dark.keypoints_px - crop_px).max()
    err_quarter = np.abs(quarter.keypoints_px - crop_px).max()
    assert err_dark < 0.2 < err_quarter <= 4.0


def test_export_writes_the_training_configs_codec_into_the_metadata():
    pytest.importorskip("torch")
    from export.describe import info_from_config
    from train.config import Config, resolve

    cfg = Config()
    default = info_from_config(resolve(cfg))
    assert (default.heatmap_encoding, default.heatmap_decoding, default.flip_shift) == ("standard", "quarter", True)
    cfg.model.heatmap_encoding, cfg.model.heatmap_decoding = "udp", "dark"
    info = info_from_config(resolve(cfg))
    assert (info.heatmap_encoding, info.heatmap_decoding, info.flip_shift) == ("udp", "dark", False)


def test_box_padding_travels_in_the_metadata_and_sizes_the_crop():
    """Training's box padding is stored by export and used by the runtime; older files get the default."""
    padded = _info(box_padding=1.5)
    props = to_metadata_props(padded)
    assert from_metadata_props(props).box_padding == 1.5
    old = {k: v for k, v in props.items() if k != KEY_PREFIX + "box_padding"}
    assert from_metadata_props(old).box_padding == DEFAULT_BOX_PADDING == 1.25
    box = (100.0, 50.0, 200.0, 250.0)  # 100 x 200 px, the model's aspect ratio 1: widened to 200 x 200
    _, scale_default = person_center_scale((480, 640, 3), box, _info())
    _, scale_padded = person_center_scale((480, 640, 3), box, padded)
    assert np.allclose(scale_default * SCALE_UNIT_PX, [250.0, 250.0])
    assert np.allclose(scale_padded * SCALE_UNIT_PX, [300.0, 300.0])
    with pytest.raises(ValueError, match="box_padding must be a positive number"):
        _info(box_padding=0.0)
