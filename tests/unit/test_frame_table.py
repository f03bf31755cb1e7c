"""The streamed frames table (rehab.outputs.FrameTableWriter): same files as writing all rows at once, memory
bounded by one chunk however many rows; file names kept as data; the worker cap."""

from __future__ import annotations

import logging
import math
import tracemalloc

import numpy as np
import pandas as pd
import pytest

from rehab.batch import capped_workers, usable_cpus
from rehab.core.skeleton import LSP14
from rehab.outputs import (
    CSV_FLOAT_FORMAT,
    MAX_FILE_NAME_CHARS,
    FrameTableWriter,
    clean_file_name,
    frame_columns,
)

ANGLES = ("left_knee_flexion", "right_knee_flexion", "left_elbow_flexion")


def _row(i: int, rng: np.random.Generator) -> dict:
    """A frame row shaped like rehab.outputs.frame_row's: 14 joints, some frames without a person."""
    found = i % 7 != 3
    row = {"frame": i, "source_frame": 2 * i, "time_s": i / 30.0, "person_found": found,
           "anonymization": "head" if found else "whole frame: no person", "repetitions": i // 40}
    for j in LSP14.joints:
        x, y = rng.uniform(0, 640, size=2)
        row[f"{j}_x_px"], row[f"{j}_y_px"] = (float(x), float(y)) if found else (math.nan, math.nan)
        row[f"{j}_score"] = float(rng.uniform())
        row[f"{j}_reliable"] = found and bool(rng.uniform() > 0.3)
    for a in ANGLES:
        row[f"{a}_deg"] = float(rng.uniform(0, 150)) if found and i % 5 else math.nan
    return row


def _columns(first_row):
    return frame_columns(LSP14.joints, [a for a in ANGLES if first_row and f"{a}_deg" in first_row])


def test_streamed_table_equals_the_table_written_at_once(tmp_path):
    rng = np.random.default_rng(0)
    rows = [_row(i, rng) for i in range(1234)]
    writer = FrameTableWriter(tmp_path / "frames.csv", tmp_path / "frames.parquet", _columns, chunk_rows=100)
    for row in rows:
        writer.add(row)
    assert writer.rows == 1234 and writer.rows_written == 1200  # the last 34 wait for close()
    assert not (tmp_path / "frames.csv").exists(), "no half table under the final name"
    writer.close()
    whole = pd.DataFrame(rows, columns=_columns(rows[0]))
    whole.to_csv(tmp_path / "whole.csv", index=False, float_format=CSV_FLOAT_FORMAT)
    assert (tmp_path / "frames.csv").read_text() == (tmp_path / "whole.csv").read_text()
    parquet = pd.read_parquet(tmp_path / "frames.parquet")
    pd.testing.assert_frame_equal(parquet, whole, check_dtype=False)
    assert parquet["person_found"].dtype == bool and parquet["left_knee_flexion_deg"].dtype == np.float64
    for column in ("left_knee_flexion_deg", "head_top_score", "head_top_reliable", "person_found"):
        assert writer.mean(column) == pytest.approx(float(whole[column].mean()), rel=1e-12)
    assert writer.sum("person_found") == whole["person_found"].sum()
    back = writer.read_columns(["time_s", "right_knee_flexion_deg"])
    np.testing.assert_array_equal(back["right_knee_flexion_deg"].to_numpy(), whole["right_knee_flexion_deg"].to_numpy())


def test_memory_of_the_table_does_not_grow_with_the_rows(tmp_path):
    """Rows go to disk a chunk at a time: 8000 rows cost what 1000 do (held whole they took ~7 KB each)."""
    rng = np.random.default_rng(1)
    template = [_row(i, rng) for i in range(64)]
    writer = FrameTableWriter(tmp_path / "frames.csv", tmp_path / "frames.parquet", _columns, chunk_rows=256)

    def add(n: int) -> None:
        for _ in range(n):
            i = writer.rows
            # Fresh value objects per row, as frame_row makes them.
            writer.add({k: (float(v) + 0.0 if isinstance(v, float) else v) for k, v in template[i % 64].items()}
                       | {"frame": i})

    tracemalloc.start()
    try:
        add(1000)
        after_1000 = tracemalloc.get_traced_memory()[0]
        add(7000)
        after_8000 = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    writer.close()
    # At most about one chunk of rows in memory (~1.8 MB here); the 7000 more rows held whole were > 35 MB.
    assert after_8000 - after_1000 < 2_000_000, (after_1000, after_8000)
    assert len(pd.read_parquet(tmp_path / "frames.parquet")) == 8000


def test_empty_table_has_its_header_and_abort_leaves_nothing(tmp_path):
    writer = FrameTableWriter(tmp_path / "frames.csv", tmp_path / "frames.parquet", _columns)
    writer.close()
    assert (tmp_path / "frames.csv").read_text().strip().split(",") == _columns(None)
    assert list(pd.read_parquet(tmp_path / "frames.parquet").columns) == _columns(None)
    assert math.isnan(writer.mean("head_top_score"))

    aborted = FrameTableWriter(tmp_path / "a.csv", tmp_path / "a.parquet", _columns, chunk_rows=2)
    rng = np.random.default_rng(2)
    for i in range(5):
        aborted.add(_row(i, rng))
    aborted.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames.csv", "frames.parquet"]
    with pytest.raises(ValueError, match="closed"):
        aborted.add(_row(5, rng))


@pytest.mark.parametrize("given, kept", [
    ("Knee session 3.mp4", "Knee session 3.mp4"),
    ("C:\\fakepath\\séance.MOV", "séance.MOV"),
    ("../../etc/passwd", "passwd"),
    ("bad\x00na\nme|?.mp4", "bad_na me__.mp4"),
    ("Mrs B\tweek 3.mp4", "Mrs B week 3.mp4"),
    ("   ", "video"),
    ("a" * 300 + ".mp4", "a" * (MAX_FILE_NAME_CHARS - 4) + ".mp4"),
])
def test_uploaded_names_are_kept_as_clean_data(given, kept):
    assert clean_file_name(given) == kept


def test_workers_are_capped_at_the_usable_cores(caplog):
    cores = usable_cpus()
    with caplog.at_level(logging.WARNING, logger="rehab.batch"):
        assert capped_workers(1000) == cores
    assert f"1000 workers asked for, but only {cores} CPU cores are usable here" in caplog.text
    caplog.clear()
    assert capped_workers(1) == 1 and not caplog.text
