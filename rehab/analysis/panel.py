"""The repetition panel's text: what the counter knows, in the words and numbers a therapist reads live.

Text only: the pipeline hands these lines to the drawing code, which knows pixels and nothing of exercises.
"""

from __future__ import annotations

from rehab.analysis.exercises import Exercise
from rehab.analysis.reps import RepState


def panel_lines(state: RepState, exercise: Exercise) -> list[str]:
    lines = [exercise.title]
    if exercise.bilateral:
        lines.append(f"Reps: {state.count}")
    else:
        counts = " | ".join(f"{side[0].upper()} {n}" for side, n in state.counts_by_side.items())
        lines.append(f"Reps: {counts}")
    for side, rom in state.current_rom.items():
        tag = side[0].upper() if side in ("left", "right") else side
        if rom.known:
            lines.append(f"{tag} ROM {rom.min_deg:.0f}-{rom.max_deg:.0f}° ({rom.span_deg:.0f}°)")
        else:
            lines.append(f"{tag} ROM --")
    last = state.last_rep
    if last is not None:
        rep = last.repetition
        text = f"Last #{last.number}: {rep.rom.span_deg:.0f}° in {rep.duration_s:.1f} s"
        if last.symmetry is not None:
            text += f", L-R {last.symmetry.difference_deg:+.0f}°"
        lines.append(text)
    return lines
