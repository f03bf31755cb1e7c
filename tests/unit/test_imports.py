"""rehab installs and runs without torch: importing it must not load torch (nor heavy runtimes from core)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


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


def _imports_of(path: Path) -> set[str]:
    """Modules a source file imports (absolute imports, as written)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_the_cli_and_its_ray_engine_import_batch():
    """Live recordings, the pages, export and samples write through rehab.outputs, never rehab.batch."""
    allowed = {REPO / "rehab" / "batch_cli.py", REPO / "rehab" / "batch_ray.py"}
    offenders = sorted(str(p.relative_to(REPO)) for room in ("rehab", "train", "export")
                       for p in (REPO / room).rglob("*.py")
                       if p not in allowed and "rehab.batch" in _imports_of(p))
    assert not offenders, f"import rehab.batch: {offenders}"


def test_outputs_import_no_torch_cv2_or_streamlit():
    loaded = _loaded_after("import rehab.outputs, rehab.video_job")
    for heavy in ("torch", "cv2", "streamlit"):
        assert heavy not in loaded, f"rehab.outputs loaded {heavy}"


def test_export_and_train_do_not_import_the_product_above_the_runtime():
    """export -> train, the runtime's model loader, core (and the torch-free accuracy/annotation modules train
    shares); never batch, app, outputs, the pipeline or analysis."""
    above = ("rehab.batch", "rehab.app", "rehab.outputs", "rehab.pipeline", "rehab.analysis", "rehab.video_job")
    offenders = sorted(f"{p.relative_to(REPO)}: {name}" for room in ("export", "train")
                       for p in (REPO / room).rglob("*.py") for name in _imports_of(p) if name.startswith(above))
    assert not offenders, offenders
