"""Values made JSON-ready: the one NaN-to-null conversion of train, export, the runtime and the outputs.

JSON has no NaN or infinity, and a value that was not measured is NaN here: it becomes null. numpy scalars
and arrays become Python numbers and lists, tuples lists, mapping keys strings. The one writer of JSON files
(``rehab.outputs.write_json``) uses this; so do the tables that are JSON-ready by contract (core.metrics).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np


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
