"""What a Ray node must have before it is given videos, checked by a task that needs only the standard library.

The Ray engine (rehab/batch_ray.py) sends :func:`probe_node` to every node *by value* (cloudpickle's
``register_pickle_by_value``), so that it also runs on a node that lacks the project and can say so, where a
task of the project's own code would fail to unpickle with a traceback. Keep this module free of imports
beyond the standard library.
"""

from __future__ import annotations

import importlib
import os
import socket
from typing import Any

# Input files reported by name when a node does not see them (the rest are counted).
SHOWN_MISSING_SOURCES = 3


def probe_node(token_path: str, modules: list[str], sources: list[str]) -> dict[str, Any]:
    """This node's view of a batch: which of ``modules`` cannot be imported (and why), the project's version,
    whether the output folder the driver marked with ``token_path`` is this node's too and writable, and which
    ``sources`` it cannot see."""
    report: dict[str, Any] = {"host": socket.gethostname(), "missing": {}, "version": None, "output": "",
                              "sources_missing": 0, "sources_shown": []}
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            report["missing"][name] = str(exc)
            continue
        if name == "rehab":
            report["version"] = getattr(module, "__version__", None)
    folder = os.path.dirname(token_path)
    if not os.path.isfile(token_path):
        report["output"] = f"does not see {token_path}, which the driver wrote"
    else:
        test = os.path.join(folder, f".rehab-node-write-test.{socket.gethostname()}.{os.getpid()}")
        try:
            with open(test, "wb"):
                pass
            os.unlink(test)
        except OSError as exc:
            report["output"] = f"cannot write there ({exc.strerror or exc})"
    missing = [s for s in sources if not os.path.isfile(s)]
    report["sources_missing"] = len(missing)
    report["sources_shown"] = missing[:SHOWN_MISSING_SOURCES]
    return report
