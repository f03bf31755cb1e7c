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
