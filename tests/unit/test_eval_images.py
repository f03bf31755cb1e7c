"""Every evaluation says which images its numbers come from."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from rehab.accuracy import describe_images, format_report, select_numbered


def test_describe_images_names_ranges_subsets_and_several_datasets():
    assert describe_images([f"lsp im{i:04d}" for i in range(1001, 2001)]) == "lsp im1001-im2000 (1000 images)"
    assert describe_images(["lsp im0001", "lsp im0005"]) == "lsp 2 images in im0001-im0005 (not contiguous)"
    both = [f"lspet im{i:05d}" for i in range(9501, 10001)] + [f"lsp im{i:04d}" for i in range(801, 1001)]
    assert describe_images(both) == "lspet im09501-im10000 (500 images) + lsp im0801-im1000 (200 images)"
    assert describe_images(["mpii #3 a.jpg", "mpii #4 b.jpg"]) == "mpii 2 images"


def test_select_numbered_keeps_the_range_and_refuses_bad_or_empty_ranges():
    records = [SimpleNamespace(entry=f"lsp im{i:04d}") for i in range(1, 1001)]
    picked = select_numbered(records, "801-1000")
    assert len(picked) == 200 and picked[0].entry == "lsp im0801" and picked[-1].entry == "lsp im1000"
    with pytest.raises(ValueError, match="must look like A-B"):
        select_numbered(records, "1000-801")
    with pytest.raises(ValueError, match="no image of this split is numbered 1001-2000"):
        select_numbered(records, "1001-2000")


def test_the_printed_table_starts_with_the_images():
    joints = {"knee": 50.0}
    rep = {"dataset": "lsp:test", "images": "lsp im1001-im2000 (1000 images)", "num_images": 1000, "flip_test": False,
           "pck": {"alpha": 0.2, "mean": 50.0, "per_joint": joints, "joints_in_mean": ["knee"], "ci95": [48.0, 52.0]},
           "pckh": {"alpha": 0.5, "mean": 40.0, "per_joint": joints}, "angles_deg": {}}
    assert format_report(rep).splitlines()[0] == "lsp:test: lsp im1001-im2000 (1000 images), flip test off"
