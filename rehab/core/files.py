"""Files every part writes the same way (stdlib + numpy): JSON with NaN as null, renamed into place, and the
SHA-256 of a file. Train, export, the runtime and rehab.outputs (batch and live recordings) use these copies.

JSON has no NaN or infinity, and a value that was not measured is NaN here: it becomes null. numpy scalars
and arrays become Python numbers and lists, tuples lists, mapping keys strings (:func:`json_ready`; the tables
that are JSON-ready by contract, in core.metrics, use it too).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

HASH_BLOCK_BYTES = 1 << 20
# A file being written has this suffix until it is complete.
PART_SUFFIX = ".part"


def json_ready(value: Any, default: Callable[[Any], Any] | None = None) -> Any:
    """``value`` with non-finite floats as None, numpy values as Python ones and tuples as lists (recursively).

    Anything else JSON cannot hold is passed to ``default`` (e.g. ``str``), or left as it is when None, so
    that ``json.dumps`` names it."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist() if isinstance(value, np.ndarray) else value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_ready(v, default) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v, default) for v in value]
    if value is None or isinstance(value, (str, int, bool)) or default is None:
        return value
    return default(value)


def part_path(path: Path) -> Path:
    """Where ``path`` is written before it is complete (then renamed to ``path``)."""
    return path.with_name(path.name + PART_SUFFIX)


def write_json(data: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """``data`` as indented JSON (NaN and infinity as null), written under a temporary name and renamed into
    place; the parent folder is created if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = part_path(path)
    tmp.write_text(json.dumps(json_ready(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(HASH_BLOCK_BYTES), b""):
            h.update(block)
    return h.hexdigest()


def fsync_path(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (so a power cut cannot undo a rename we relied on)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # folders cannot be opened on Windows; NTFS journals the rename
    try:
        os.fsync(fd)
    except OSError:
        logger.debug("fsync of %s not supported", path)
    finally:
        os.close(fd)
