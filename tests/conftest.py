"""Shared test helpers: locating the read-only real data outside the repository."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def get_shared_dir() -> Path:
    """The shared data root: $REHAB_SHARED_DIR, else <repo>/../shared."""
    env = os.environ.get("REHAB_SHARED_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def check_data(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` if it exists; otherwise skip the test, or fail it when REHAB_REQUIRE_DATA=1."""
    path = Path(path)
    if not path.exists():
        reason = f"real data not found: {path} (set REHAB_SHARED_DIR to the shared folder)"
        if os.environ.get("REHAB_REQUIRE_DATA") == "1":
            pytest.fail(reason + "; REHAB_REQUIRE_DATA=1 makes missing data an error")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return get_shared_dir()


@pytest.fixture(scope="session")
def require_data():
    """The ``check_data`` helper as a fixture: ``require_data(shared_dir / "data/...")``."""
    return check_data


@pytest.fixture(scope="session")
def face_model() -> Path:
    """The CenterFace model fetched at set-up (``python -m rehab.samples``); skips, or fails in CI, without it."""
    from rehab.runtime.centerface import FaceModelError, check_model_file

    try:
        return check_model_file()
    except FaceModelError as exc:
        if os.environ.get("REHAB_REQUIRE_DATA") == "1":
            pytest.fail(f"{exc} (REHAB_REQUIRE_DATA=1 makes it an error)")
        pytest.skip(str(exc))
