"""Kill-and-resume: `rehab process` SIGKILLed half-way, then run again, ends with every output complete and valid.

The first run uses two worker processes and only its main process is killed, as the OOM killer or a closed
laptop lid would: the workers must notice and stop, the lock must be released, and no folder under its final
name may be incomplete at any moment. The second run must skip what was finished and redo the rest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pandas as pd
import pytest

from rehab.batch import LOCK_FILE
from rehab.outputs import DONE_FILE, STAGING_DIR, check_complete
from tests.synthetic_clips import ClipSpec, write_clip

pytest.importorskip("onnx")
from tests.e2e.browser_support import write_tiny_pose_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CLIPS = 5
FPS = 15.0
SECONDS = 2.5
KILL_DEADLINE_S = 120.0
ORPHAN_GRACE_S = 10.0


def rehab_command() -> list[str]:
    script = Path(sys.executable).with_name("rehab")
    return [str(script)] if script.exists() else [sys.executable, "-c", "from rehab.cli import main; main()"]


def finished(out: Path) -> list[str]:
    return sorted(p.parent.name for p in out.glob(f"*/{DONE_FILE}"))


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")  # a zombie has stopped; only its exit status is left to collect


def test_sigkill_half_way_then_rerun_completes_everything(tmp_path):
    model = write_tiny_pose_model(tmp_path / "tiny.onnx")
    videos = tmp_path / "sessions"
    videos.mkdir()
    for i in range(CLIPS):
        write_clip(videos / f"session{i}.mp4", ClipSpec(width=256, height=192, fps=FPS, seconds=SECONDS))
    out = tmp_path / "out"
    command = rehab_command() + ["process", str(videos), "--out", str(out), "--model", str(model),
                                 "--workers", "2", "--no-pdf", "--exercise", "squat"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    first = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    worker_pids: set[int] = set()
    deadline = time.monotonic() + KILL_DEADLINE_S
    try:
        while not finished(out):
            assert first.poll() is None, f"the run ended before it could be killed: {first.communicate()}"
            assert time.monotonic() < deadline, "no video finished in time"
            staging = out / STAGING_DIR
            worker_pids |= {int(p.name.rsplit(".", 1)[1]) for p in staging.glob("*.*")} if staging.is_dir() else set()
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()
    done_at_kill = finished(out)
    assert 1 <= len(done_at_kill) < CLIPS, f"not killed half-way: {done_at_kill} finished"

    # Right after the kill: every folder under its final name is complete (the others are only staged).
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert visible == done_at_kill
    for name in visible:
        assert check_complete(out / name) is None, name
    # The orphaned workers notice that their batch is gone and stop.
    grace = time.monotonic() + ORPHAN_GRACE_S
    while any(alive(pid) for pid in worker_pids) and time.monotonic() < grace:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in worker_pids), f"orphaned workers still running: {worker_pids}"
    mtimes = {name: (out / name / DONE_FILE).stat().st_mtime_ns for name in done_at_kill}

    second = subprocess.run(command + ["--no-progress"], check=False, cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    lines = {line.split()[0]: line for line in second.stdout.splitlines() if line.startswith("session")}
    for i in range(CLIPS):
        name = f"session{i}"
        expected = "skipped (complete)" if name in done_at_kill else "done"
        assert expected in lines[name], lines[name]
        folder = out / name
        assert check_complete(folder) is None, name
        with av.open(str(folder / "annotated.mp4")) as c:
            frames = sum(1 for _ in c.decode(video=0))
        rows = pd.read_csv(folder / "frames.csv")
        summary = json.loads((folder / "summary.json").read_text())
        assert frames == len(rows) == len(pd.read_parquet(folder / "frames.parquet")) == ClipSpec(fps=FPS, seconds=SECONDS).frame_count
        assert summary["processing"]["frames"] == frames and summary["exercise"]["name"] == "squat"
        assert (folder / "report.html").read_text().rstrip().endswith("</html>")
    for name, mtime in mtimes.items():
        assert (out / name / DONE_FILE).stat().st_mtime_ns == mtime, f"{name} was redone although complete"
    assert not (out / STAGING_DIR).exists()
    assert sorted(p.name for p in out.iterdir()) == sorted([LOCK_FILE] + [f"session{i}" for i in range(CLIPS)])
