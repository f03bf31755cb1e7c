"""Joint angles trusted from one frame to the next: a speed limit on every angle series.

A misplaced joint (a knee snapping onto a floor post for a frame) turns an angle by 100+ degrees between two
frames, which no joint can do. Such a sample is dropped (reported as unknown), not smoothed into the series:
a smoothed spike would still bend the range of motion and could complete a repetition. If the new value
persists, the earlier series was the wrong one, and the gate follows the new value from its second sample.
For the same reason the first sample of a series is only reported once the next one agrees with it, and a
flexion beyond what a joint can do (AngleSettings.max_flexion_deg) is never reported.
"""

from __future__ import annotations

import math
from typing import Mapping

from rehab.settings import AngleSettings


class AngleGate:
    """Per angle name: the last accepted sample, and a rejected sample that may turn out to be the right one."""

    def __init__(self, settings: AngleSettings | None = None) -> None:
        self.settings = settings or AngleSettings()
        self.rejected = 0
        self.reset()

    def reset(self) -> None:
        self._accepted: dict[str, tuple[float, float]] = {}
        self._candidate: dict[str, tuple[float, float]] = {}

    def _reachable(self, frm: tuple[float, float], value: float, t_s: float) -> bool:
        s = self.settings
        last_value, last_t = frm
        return abs(value - last_value) <= s.max_speed_deg_s * max(t_s - last_t, 0.0) + s.jump_tolerance_deg

    def __call__(self, angles_deg: Mapping[str, float], t_s: float) -> dict[str, float]:
        """The angles of one frame with impossible jumps replaced by NaN."""
        out: dict[str, float] = {}
        for name, value in angles_deg.items():
            value = float(value)
            if not self.settings.gate_jumps or not math.isfinite(value):
                out[name] = value
                continue
            if name.endswith("_flexion") and value > self.settings.max_flexion_deg:
                self.rejected += 1
                out[name] = math.nan
                continue
            last = self._accepted.get(name)
            candidate = self._candidate.pop(name, None)
            # A value is trusted when a trusted one leads to it, or when it confirms the sample before it: the
            # first sample of a series (or after a jump) waits one frame for a second opinion.
            if (last is not None and self._reachable(last, value, t_s)) or (
                    candidate is not None and self._reachable(candidate, value, t_s)):
                self._accepted[name] = (value, t_s)
                out[name] = value
            else:
                self._candidate[name] = (value, t_s)
                self.rejected += 1
                out[name] = math.nan
        return out
