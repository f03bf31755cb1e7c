"""rehab installs and runs without torch: importing it must not load torch (nor heavy runtimes from core)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("statement", [
    "import rehab",
    "import rehab.core.skeleton, rehab.core.heatmaps, rehab.core.transforms, rehab.core.angles, rehab.core.metrics",
])
def test_core_imports_no_torch_cv2_onnxruntime_or_streamlit(statement):
    loaded = _loaded_after(statement)
    for heavy in ("torch", "cv2", "onnxruntime", "streamlit"):
        assert heavy not in loaded, f"{statement!r} loaded {heavy}"


def test_runtime_and_pipeline_import_no_torch():
    loaded = _loaded_after("import rehab.runtime.model, rehab.pipeline, rehab.cli")
    assert "torch" not in loaded


def test_runtime_never_imports_analysis():
    """Drawing knows pixels, not counting: the overlay is composed above both (in the pipeline)."""
    modules = ("anonymize", "draw", "metadata", "model", "roi", "session", "smoothing", "video")
    loaded = _loaded_after("import " + ", ".join(f"rehab.runtime.{m}" for m in modules))
    assert not {m for m in loaded if m.startswith("rehab.analysis")}
