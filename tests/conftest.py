"""Shared test helpers: locating the read-only real data outside the repository."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def get_shared_dir() -> Path:
    """The shared data root: $REHAB_SHARED_DIR, else <repo>/../shared."""
    env = os.environ.get("REHAB_SHARED_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared"


@functools.cache
def _set_up_clips() -> dict[str, Path]:
    """The sample clips `.ci/setup` fetched into sample_videos/ (rehab.samples), by file name, kept only
    where the file's SHA-256 is the one rehab.samples lists: the very file ../shared/videos holds."""
    from rehab.outputs import sha256_file
    from rehab.samples import SAMPLE_DIR, SOURCES

    found = {}
    for source in SOURCES:
        for _, name, digest in source.videos:
            path = SAMPLE_DIR / name
            if path.is_file() and sha256_file(path) == digest:
                found[name] = path
    return found


def check_data(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` if it exists; otherwise skip the test, or fail it when REHAB_REQUIRE_DATA=1.

    A clip of ../shared/videos that `.ci/setup` also put in sample_videos/ (same SHA-256) is used from
    there, so a fresh clone without ../shared still runs the tests that need only the sample clips."""
    path = Path(path)
    if not path.exists() and path.parent.name == "videos" and path.name in _set_up_clips():
        return _set_up_clips()[path.name]
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
