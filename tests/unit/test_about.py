"""The Settings & about page's sentences (rehab.app.about) from real model metadata and provider lists."""

from __future__ import annotations

from rehab.app import about
from rehab.runtime.model import PoseModel
from tests.default_model import load_default_fp32_model

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def test_default_model_reads_in_words_and_numbers():
    info = PoseModel.load().info
    acc = about.accuracy(dict(info.metrics), dict(info.variant))
    # The shipped file's own LSP test figure (1000 images no training step saw) is preferred to any other.
    assert acc.pck == info.metrics["lsp_test_pck@0.2"] and acc.images == info.metrics["lsp_test_images"] == 1000
    assert acc.verdict == "moderate"
    assert acc.sentence.startswith(f"Accuracy is moderate. On 1000 test images: photos of people doing "
                                   f"sport (LSP), {acc.pck:.0f} of every 100 arm and leg joints")
    assert f"(PCK@0.2 = {acc.pck:.1f} %)" in acc.sentence
    check = about.file_check(info.precision, dict(info.variant))
    if info.precision == "fp32":  # described by its export check, not as a reduced-precision variant
        assert check.startswith("Checked after export against the trained network on 16 images")
        assert "full-precision" not in check
    else:  # a reduced-precision file says how far it drifted from the full-precision one
        ev = info.variant["eval"]
        assert check == (f"Accuracy {info.variant['drift_pp']:+.1f} points against the full-precision model on the "
                         f"export's check ({ev['images']} images: {ev['pck@0.2']:.1f} % vs "
                         f"{info.variant['pck_fp32']:.1f} %).")
        twin = load_default_fp32_model().info
        assert about.file_check(twin.precision, dict(twin.variant)).startswith(
            "Checked after export against the trained network on 16 images")
    # The shipped model's last training step is its presence head: sport photos, lab video frames, empty images.
    words = about.training_words(dict(info.training))
    assert words.startswith("photos of people doing sport (LSP), training part")
    assert not any(kind in words for kind in ("VIDEO", "SYNTHETIC", "MINED"))
    assert about.training_words({"data": {"train": [{"kind": "synthetic"}, {"kind": "lspet", "split": "all"}]}}) == (
        "generated images with nobody in them; photos of people doing sport (LSP Extended), all")
    assert about.accuracy({"lsp_test_pck@0.2": 78.5, "lsp_test_images": 1000}, {"eval": {"pck@0.2": 83.6}}).pck == 78.5


def test_accuracy_falls_back_to_the_training_figure_and_reduced_precision_says_its_drift():
    metrics = {"val_pck@0.2": 91.2, "val_sets": [{"kind": "mpii", "split": "valid", "limit": 500}]}
    acc = about.accuracy(metrics, {})
    assert (acc.verdict, acc.pck, acc.images) == ("high", 91.2, 500)
    assert "photos of everyday activities (MPII)" in acc.sentence
    assert about.accuracy({"note": "none"}, {}) is None
    int8 = {"eval": {"pck@0.2": 75.9, "images": 300}, "pck_fp32": 76.3, "drift_pp": -0.4}
    assert about.file_check("int8", int8) == ("Accuracy -0.4 points against the full-precision model on the "
                                              "export's check (300 images: 75.9 % vs 76.3 %).")
    int8.pop("eval")
    assert about.file_check("int8", int8) == "Accuracy -0.4 points against the full-precision model (76.3 %)."


def test_device_and_why_in_every_case():
    no_gpu = about.device_report([CPU], [TRT, CUDA, CPU], gpu_visible=False)
    assert no_gpu.gpu_unavailable and no_gpu.device == "the processor (CPU)"
    assert no_gpu.line == ("The pose model runs on the processor (CPU) (CPUExecutionProvider): GPU support "
                           "(TensorRT and CUDA) is installed, but no NVIDIA GPU was found on this machine.")
    broken = about.device_report([CPU], [CUDA, CPU], gpu_visible=True)
    assert broken.gpu_unavailable and "CUDA could not be started" in broken.why
    cpu_build = about.device_report([CPU], [CPU], gpu_visible=True)
    assert not cpu_build.gpu_unavailable and "no GPU support" in cpu_build.why
    on_gpu = about.device_report([CUDA, CPU], [CUDA, CPU], gpu_visible=True)
    assert not on_gpu.gpu_unavailable and on_gpu.device == "the graphics card (GPU, CUDA)"


def test_versions_dates_and_details_are_clean():
    assert about.clean_version("0.1.0+g60f6a449e4c7.dirty") == "0.1.0"
    assert about.clean_version("0.2.0") == "0.2.0" and about.clean_version(None) == ""
    assert about.readable_date("2026-11-26T12:08:46+00:00") == "26 November 2026"
    rows = dict(about.flat_items({"a": None, "b": {"c": 1.23456, "d": [], "e": [1, 2]},
                                  "sets": [{"kind": "lsp", "limit": None}]}))
    assert rows == {"b.c": "1.235", "b.e": "1, 2", "sets[0].kind": "lsp"}
