"""`rehab process` and `rehab exercises` as a therapist runs them: the installed command in a subprocess.

Checks what the person at the terminal sees: the final table (which video failed and why), one clear error
line per bad video on stderr, the exit code (0 all done, 1 some failed, 2 nothing could run), and that a
re-run reports finished videos as complete without redoing them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rehab.analysis.exercises import EXERCISES
from tests.synthetic_clips import ClipSpec, write_clip

pytest.importorskip("onnx")
from tests.e2e.browser_support import write_tiny_pose_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300


def rehab(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("rehab")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from rehab.cli import main; main()"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(command + list(args), check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_pose_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def test_exercises_lists_every_exercise_with_its_angles():
    run = rehab("exercises")
    assert run.returncode == 0, run.stderr
    for name, exercise in EXERCISES.items():
        assert re.search(rf"^{name}: {re.escape(exercise.title)}$", run.stdout, re.M), name
        assert all(angle in run.stdout for angle in exercise.angles)
    assert "lateral_raise" in run.stdout and "squat" in run.stdout


def test_process_folder_with_good_and_bad_videos(tmp_path, model):
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    monday = ClipSpec(width=256, height=192, fps=15, seconds=1.5)
    tuesday = ClipSpec(width=256, height=192, fps=15, seconds=1.0, codec="vp9")
    write_clip(sessions / "monday.mp4", monday)
    write_clip(sessions / "tuesday.webm", tuesday)
    (sessions / "empty.mp4").write_bytes(b"")
    (sessions / "notes.mp4").write_text("not a video\n" * 40)
    out = tmp_path / "out"
    missing = tmp_path / "nowhere.mp4"

    run = rehab("process", str(sessions), str(missing), "--out", str(out), "--model", str(model),
                "--exercise", "lateral_raise", "--no-pdf")
    assert run.returncode == 1, run.stdout + run.stderr
    rows = {line.split()[0]: line for line in run.stdout.splitlines()[1:-1]}
    assert set(rows) == {"monday", "tuesday", "empty", "notes", "nowhere"}
    assert re.search(rf"^monday\s+done\s+{monday.frame_count}\s", rows["monday"]), rows["monday"]
    assert re.search(rf"^tuesday\s+done\s+{tuesday.frame_count}\s", rows["tuesday"]), rows["tuesday"]
    assert "FAILED" in rows["empty"] and "empty (0 bytes)" in rows["empty"]
    assert "FAILED" in rows["notes"] and "cannot be read as video" in rows["notes"]
    assert "FAILED" in rows["nowhere"] and "file not found" in rows["nowhere"]
    assert re.search(r"^2 done, 0 already complete, 3 failed in [\d.]+ s with 1 worker: [\d.]+ videos/min, "
                     r"[\d.]+ frames/s$", run.stdout.splitlines()[-1]), run.stdout
    for bad in ("empty.mp4", "notes.mp4", "nowhere.mp4"):
        assert re.search(rf"FAILED \S*{bad}: ", run.stderr), f"no error line for {bad}:\n{run.stderr}"
    assert "Traceback" not in run.stderr
    for name in ("monday", "tuesday"):
        assert (out / name / "DONE.json").is_file() and (out / name / "annotated.mp4").is_file()

    again = rehab("process", str(sessions / "monday.mp4"), str(sessions / "tuesday.webm"), "--out", str(out),
                  "--model", str(model), "--exercise", "lateral_raise", "--no-pdf")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("skipped (complete)") == 2
    assert "0 done, 2 already complete, 0 failed" in again.stdout


def test_nothing_can_run_exits_2_with_one_clear_line(tmp_path, model):
    clip = write_clip(tmp_path / "clip.mp4", ClipSpec(width=128, height=96, fps=15, seconds=0.5))
    typo = tmp_path / "settings.yaml"
    typo.write_text("anonymise:\n  enabled: false\n")
    cases = {
        "settings typo": (["--settings", str(typo)], r"error: unknown key settings\.anonymise"),
        "unknown exercise": (["--exercise", "squats"], r"error: unknown exercise 'squats'; known: squat, sit_to_stand"),
        # Root ignores file permissions; /sys refuses new folders even to root.
        "unwritable output": (["--out", "/sys/rehab-e2e-out"], r"error: cannot write to the output folder /sys/rehab-e2e-out"),
        "missing model": (["--model", str(tmp_path / "missing.onnx")], r"error: .*missing\.onnx"),
        "bad stride": (["--stride", "0"], r"stride"),
    }
    for what, (extra, pattern) in cases.items():
        args = ["process", str(clip), "--out", str(tmp_path / "out"), "--model", str(model), *extra]
        run = rehab(*args)
        assert run.returncode == 2, f"{what}: {run.returncode}\n{run.stdout}{run.stderr}"
        assert re.search(pattern, run.stderr), f"{what}: {run.stderr}"
        assert "Traceback" not in run.stderr, what
    empty_folder = tmp_path / "no_videos"
    empty_folder.mkdir()
    run = rehab("process", str(empty_folder), "--out", str(tmp_path / "out"), "--model", str(model))
    assert run.returncode == 2 and "error: no videos to process" in run.stderr


def test_workers_beyond_the_usable_cores_are_capped_with_a_warning(tmp_path, model, caplog):
    """`--workers 1000` on a small machine: one warning, and no more worker processes than cores."""
    from typer.testing import CliRunner

    from rehab.batch import usable_cpus
    from rehab.cli import app

    cores = usable_cpus()
    clips = tmp_path / "clips"
    clips.mkdir()
    for day in range(cores + 1):
        write_clip(clips / f"day{day}.mp4", ClipSpec(width=128, height=96, fps=15, seconds=0.5))
    with caplog.at_level("WARNING", logger="rehab.batch"):
        run = CliRunner().invoke(app, ["process", str(clips), "--out", str(tmp_path / "out"), "--workers", "1000",
                                       "--model", str(model), "--no-pdf", "--no-progress"])
    assert run.exit_code == 0, run.output
    assert f"1000 workers asked for, but only {cores} CPU cores are usable here: using {cores} workers" in caplog.text
    assert f"with {cores} worker{'s' if cores > 1 else ''}:" in run.output
    # One video is processed in this process, whatever --workers says, and the line says so.
    run = CliRunner().invoke(app, ["process", str(clips / "day0.mp4"), "--out", str(tmp_path / "one"), "--workers",
                                   "2", "--model", str(model), "--no-pdf", "--no-progress"])
    assert run.exit_code == 0 and "with 1 worker:" in run.output, run.output


def test_engine_ray_without_ray_installed_says_how_to_install_it(tmp_path, model):
    clip = write_clip(tmp_path / "clip.mp4", ClipSpec(width=128, height=96, fps=15, seconds=0.5))
    # None in sys.modules makes `import ray` fail as on a machine without it (the local engine needs no Ray).
    code = "import sys; sys.modules['ray'] = None; from rehab.cli import main; sys.argv[0] = 'rehab'; main()"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["process", str(clip), "--out", str(tmp_path / "out"), "--model", str(model), "--no-pdf"]
    run = subprocess.run([sys.executable, "-c", code, *args, "--engine", "ray"], check=False, cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=TIMEOUT_S)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "error: --engine ray needs Ray, which is not installed here: pip install 'rehab-pose[cluster]'" in run.stderr
    assert "Traceback" not in run.stderr
    local = subprocess.run([sys.executable, "-c", code, *args], check=False, cwd=REPO, env=env, capture_output=True,
                           text=True, timeout=TIMEOUT_S)
    assert local.returncode == 0 and "1 done" in local.stdout, local.stdout + local.stderr
