"""Rehabilitation pose monitor: pose, joint angles and repetitions from video, without torch."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["PoseModel", "Pose", "__version__"]


def __getattr__(name: str):
    # The inference API pulls in cv2 and onnxruntime; load it on first use so that `import rehab`
    # (and rehab.core) stays light.
    if name in ("PoseModel", "Pose"):
        from rehab.runtime import model

        return getattr(model, name)
    raise AttributeError(f"module 'rehab' has no attribute {name!r}")
