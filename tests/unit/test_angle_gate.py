"""The angle gate: impossible jumps between frames are dropped, real movement passes, a new level is adopted."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rehab.analysis.gating import AngleGate
from rehab.settings import AngleSettings

FPS = 30.0


def run(values, settings=None, fps=FPS):
    gate = AngleGate(settings or AngleSettings())
    return [gate({"knee": v}, i / fps)["knee"] for i, v in enumerate(values)], gate


def test_fast_real_movement_passes_untouched():
    # A squat at 90 deg per 0.5 s and a kick at 600 deg/s: both within what a knee can do.
    squat = list(np.linspace(5, 95, 16)) + list(np.linspace(95, 5, 16))
    kick = list(np.arange(0, 120, 600 / FPS))
    for series in (squat, kick):
        out, gate = run(series)
        # The first sample waits for the second to confirm it; everything after passes as measured.
        assert math.isnan(out[0]) and out[1:] == pytest.approx(series[1:]) and gate.rejected == 1


def test_a_one_frame_spike_is_dropped_not_smoothed_in():
    series = [20.0] * 5 + [178.0] + [21.0] * 5
    out, gate = run(series)
    assert math.isnan(out[5]) and gate.rejected == 2  # the spike, and the unconfirmed first sample
    assert out[1:5] == pytest.approx(series[1:5]) and out[6:] == pytest.approx(series[6:])


def test_a_wrong_first_sample_is_never_reported():
    series = [174.0, 4.0, 5.0, 6.0]  # a knee folded on the first frame it was seen, then the true value
    out, _ = run(series)
    assert math.isnan(out[0]) and math.isnan(out[1]) and out[2:] == pytest.approx(series[2:])


def test_a_value_that_persists_is_adopted_from_its_second_sample():
    # The earlier series was the wrong one (a joint on a floor post): the gate follows the new level.
    series = [170.0] * 5 + [30.0] * 5
    out, _ = run(series)
    assert math.isnan(out[5]) and out[6:] == pytest.approx(series[6:])


def test_a_gap_allows_as_much_change_as_its_duration():
    gate = AngleGate(AngleSettings(max_speed_deg_s=100.0, jump_tolerance_deg=0.0))
    gate({"a": 10.0}, -0.01)
    assert gate({"a": 10.0}, 0.0)["a"] == 10.0
    assert math.isnan(gate({"a": math.nan}, 0.1)["a"])  # unmeasured: passes as unknown, state kept
    assert gate({"a": 60.0}, 0.5)["a"] == 60.0  # 50 deg in 0.5 s at 100 deg/s
    assert math.isnan(gate({"a": 100.0}, 0.6)["a"])  # 40 deg in 0.1 s


def test_the_gate_can_be_turned_off_and_reset():
    series = [20.0, 178.0, 20.0]
    out, gate = run(series, AngleSettings(gate_jumps=False))
    assert out == series
    gate = AngleGate()
    gate({"a": 20.0}, 0.0)
    gate({"a": 20.0}, 1 / FPS)
    gate.reset()
    gate({"a": 178.0}, 2 / FPS)
    assert gate({"a": 178.0}, 3 / FPS)["a"] == 178.0


@pytest.mark.parametrize("field, value", [("max_speed_deg_s", 0.0), ("jump_tolerance_deg", -1.0)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        AngleSettings(**{field: value})


def test_a_flexion_no_joint_can_reach_is_dropped():
    gate = AngleGate(AngleSettings(max_flexion_deg=165.0))
    out = [gate({"left_knee_flexion": v, "trunk_lean": v}, i / FPS) for i, v in enumerate([150.0, 160.0, 179.0, 160.0])]
    assert [o["left_knee_flexion"] for o in out][1:] == [160.0, pytest.approx(math.nan, nan_ok=True), 160.0]
    assert out[2]["trunk_lean"] == 179.0 or math.isnan(out[2]["trunk_lean"])  # not a flexion: the limit is not applied
