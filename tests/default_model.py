"""The embedded default pose model for tests (one helper, imported by the test modules that need it)."""

from __future__ import annotations

import os

import pytest


def load_default_model():
    """The embedded default model; skips (or fails when REHAB_REQUIRE_MODEL=1) while it does not exist."""
    from rehab.runtime.model import PoseModel

    try:
        return PoseModel.load(threads=2)
    except FileNotFoundError as exc:
        reason = f"no default pose model yet: {exc}"
        if os.environ.get("REHAB_REQUIRE_MODEL") == "1":
            pytest.fail(reason + " (REHAB_REQUIRE_MODEL=1 makes a missing model an error)")
        pytest.skip(reason)


def load_default_fp32_model():
    """The full-precision twin of the default model: the default itself when it is FP32, else
    rehab/models/default_fp32.onnx, the network the default was quantised from."""
    model = load_default_model()
    if model.info.precision == "fp32":
        return model
    from rehab.runtime.model import PoseModel

    twin = PoseModel.load(model.path.with_name("default_fp32.onnx"), threads=2)
    assert (twin.info.precision == "fp32" and twin.info.name == model.info.variant["quantized_from"]
            and twin.info.source_sha256 == model.info.source_sha256), (
        f"{twin.path.name} ({twin.info.name}, {twin.info.precision}, checkpoint {twin.info.source_sha256[:12]}) is "
        f"not the network {model.path.name} was quantised from ({model.info.variant.get('quantized_from')})")
    return twin
