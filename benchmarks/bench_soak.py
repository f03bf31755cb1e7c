"""Long sessions stay flat: resident memory (RSS) of `rehab process` on a 1-hour clip, and of the dashboard's
server during a long live session in Chromium with a fake camera, sampled at intervals.

    PYTHONPATH=. python benchmarks/bench_soak.py batch [--seconds 3600] [--size 96x160] [--interval 30]
    PYTHONPATH=. python benchmarks/bench_soak.py live --minutes 30 [--interval 30]     # as root (unshare -n)
    PYTHONPATH=. python benchmarks/bench_soak.py report [--frames 3000 108000]          # the report phase alone

`batch` generates the clip once (rehab.testclips' squatting figure, cached in out/benchmarks/soak/), runs the
real command `rehab process CLIP --out DIR --exercise squat` as a child process and reads its VmRSS from
/proc every interval. `live` starts the real Streamlit server, opens the live page in headless Debian
Chromium with a fake camera fed from a real clip (the helpers of tests/e2e/browser_support.py, inside a
private network namespace), records for the whole session, and reads the RSS of the server process and its
children every interval; the recording is stopped and saved at the end.

Growth is measured after a warm-up (the model, the codecs and the first chunk of table rows are loaded by
then): the largest RSS after warm-up minus the RSS at the end of warm-up. Goal: under 50 MB for both.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import WORK_DIR, finish, machine  # noqa: E402

logger = logging.getLogger(__name__)

SOAK_DIR = WORK_DIR / "soak"
GOAL_GROWTH_MB = 50.0
MB = 1024 * 1024
KIB = 1024
# What the live session feeds the fake camera (the subject faces the camera; Chromium loops the file).
LIVE_CLIP = "pose2sim_balancing_cam02.mp4"
# Time the live session needs besides the soak itself: server start, WebRTC set-up, stop and save.
LIVE_OVERHEAD_S = 240.0
# No new camera frame for this long: the stream has ended, and the soak starts it again.
STREAM_STALL_S = 60.0


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * KIB
    except (OSError, ValueError, IndexError):
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (read from /proc/*/stat)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def tree_rss_bytes(pid: int) -> int:
    return sum(rss_bytes(p) for p in descendants(pid))


def growth(samples: list[dict], warmup_s: float) -> dict:
    """RSS at the end of warm-up, the largest after it, the last, and the growth (largest - warm-up) in MB."""
    after = [s for s in samples if s["t_s"] >= warmup_s]
    if not after:
        return {"warmup_s": warmup_s, "note": "the run ended before its warm-up did"}
    base = after[0]["rss_mb"]
    peak = max(s["rss_mb"] for s in after)
    return {"warmup_s": warmup_s, "rss_after_warmup_mb": base, "rss_peak_after_warmup_mb": peak,
            "rss_last_mb": samples[-1]["rss_mb"], "growth_mb": round(peak - base, 1),
            "goal_growth_mb": GOAL_GROWTH_MB, "met": peak - base < GOAL_GROWTH_MB}


def _sample(t0: float, rss: int, **extra) -> dict:
    s = {"t_s": round(time.monotonic() - t0, 1), "rss_mb": round(rss / MB, 1), **extra}
    print("  ".join(f"{k}={v}" for k, v in s.items()), flush=True)
    return s


# ----------------------------------------------------------------------------------------------
# batch


def soak_clip(seconds: float, size: str, fps: float) -> Path:
    """The squatting-figure clip of ``seconds`` at ``size`` (WIDTHxHEIGHT), generated once and cached."""
    from tests.synthetic_clips import ClipSpec, write_clip

    width, height = (int(v) for v in size.lower().split("x"))
    path = SOAK_DIR / f"squats_{width}x{height}_{fps:g}fps_{seconds:g}s.mp4"
    if not path.is_file():
        SOAK_DIR.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.stem + ".part.mp4")
        logger.info("generating %s (%d frames)", path, round(seconds * fps))
        write_clip(partial, ClipSpec(width=width, height=height, fps=fps, seconds=seconds))
        partial.replace(path)
    return path


def _report_started(out: Path) -> bool:
    """True once the staged summary.json exists: the video is done and the report is being written."""
    from rehab.outputs import SUMMARY_JSON
    from rehab.video_job import STAGING_DIR

    return any((out / STAGING_DIR).glob(f"*/{SUMMARY_JSON}"))


def run_batch_soak(args) -> dict:
    """RSS every interval; between samples it is polled every 0.2 s, so each sample also carries the largest
    RSS since the previous one, and the samples after the staged summary.json appears are the report phase."""
    clip = args.clip or soak_clip(args.seconds, args.size, args.fps)
    out = SOAK_DIR / "batch_out"
    # The console script as installed (rehab.cli has no __main__), run by this interpreter.
    command = [sys.executable, str(Path(sys.executable).with_name("rehab")), "process", str(clip), "--out", str(out), "--exercise", "squat",
               "--force", "--no-progress", *(["--no-pdf"] if args.no_pdf else [])]
    print("running:", " ".join(command), flush=True)
    t0 = time.monotonic()
    log_path = SOAK_DIR / "batch.log"
    samples, phase, report_t = [], "video", None
    with log_path.open("w") as log:
        child = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        while child.poll() is None:
            peak = rss = rss_bytes(child.pid)
            deadline = time.monotonic() + args.interval
            while child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
                rss = rss_bytes(child.pid) or rss
                peak = max(peak, rss)
                if phase == "video" and _report_started(out):
                    phase, report_t = "report", round(time.monotonic() - t0, 1)
                    break
            samples.append(_sample(t0, rss, peak_mb=round(peak / MB, 1), phase=phase))
    summary_path = next(out.glob("*/summary.json"), None)
    frames = json.loads(summary_path.read_text())["processing"]["frames"] if summary_path else None
    video = [s for s in samples if s["phase"] == "video"]
    report = [s for s in samples if s["phase"] == "report"]
    result = {"what": "batch", "command": " ".join(command), "clip": str(clip), "exit_code": child.returncode,
              "frames": frames, "elapsed_s": round(time.monotonic() - t0, 1), "interval_s": args.interval,
              "samples": samples, **growth(video, args.warmup_s), "report_started_s": report_t,
              "log_tail": log_path.read_text()[-1500:]}
    if report and video:
        # A fixed cost paid once per process (matplotlib and the angle columns), not growth: `report` measures it.
        result["report_phase_peak_mb"] = max(s["peak_mb"] for s in report)
        result["report_phase_over_video_end_mb"] = round(result["report_phase_peak_mb"] - video[-1]["rss_mb"], 1)
    return result


def run_report_cost(args) -> dict:
    """The report phase in this process: RSS before and after writing report.html and report.pdf for a short
    and a long frames table, then for many reports in a row (what a batch worker does video after video)."""
    import gc

    import numpy as np
    import pandas as pd

    from rehab.report import write_html, write_pdf

    def rss_mb() -> float:
        return round(rss_bytes(os.getpid()) / MB, 1)

    # A real summary.json: a 10-second squat clip through the real command, in a child process.
    out = SOAK_DIR / "report_out"
    clip = soak_clip(10.0, "96x160", 30.0)
    subprocess.run([sys.executable, str(Path(sys.executable).with_name("rehab")), "process", str(clip), "--out",
                    str(out), "--exercise", "squat", "--force", "--no-progress"], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL)
    summary = json.loads(next(out.glob("*/summary.json")).read_text())
    angles = list(summary["angles"])

    def table(n: int) -> pd.DataFrame:
        t = np.arange(n) / 30.0
        return pd.DataFrame({"time_s": t, **{f"{a}_deg": 110 + 40 * np.sin(t / 3 + i) for i, a in enumerate(angles)}})

    SOAK_DIR.mkdir(parents=True, exist_ok=True)
    rows, base = [], rss_mb()
    for n in args.frames:
        frames = table(n)
        with_table = rss_mb()
        for i in range(args.reports):
            write_html(SOAK_DIR / "report.html", summary, frames, video_file="annotated.mp4")
            write_pdf(SOAK_DIR / "report.pdf", summary, frames)
            gc.collect()
            if i in (0, 1, args.reports - 1):
                rows.append({"frames": n, "report": i + 1, "rss_mb": rss_mb(), "rss_with_table_mb": with_table})
                print(rows[-1], flush=True)
        del frames
        gc.collect()
    return {"what": "report", "rss_at_start_mb": base, "rows": rows}


# ----------------------------------------------------------------------------------------------
# live (runs inside `unshare -n`; see tests/e2e/browser_support.py)


def run_live_soak(args) -> dict:
    from playwright.sync_api import expect, sync_playwright

    from tests.e2e import browser_support as bs

    source = args.clip or next(p for p in (REPO / "sample_videos" / LIVE_CLIP, REPO.parent / "shared" / "videos" / LIVE_CLIP)
                               if p.is_file())
    SOAK_DIR.mkdir(parents=True, exist_ok=True)
    camera = bs.make_camera_clip(Path(source), SOAK_DIR / "camera.y4m")
    data_dir = SOAK_DIR / "live_data"
    bs.setup_network()
    port = bs.free_port()
    result: dict = {"what": "live", "clip": str(source), "minutes_planned": args.minutes, "interval_s": args.interval}
    model = args.model
    if args.test_model:
        # The whole live path (WebRTC, pipeline, drawing, anonymisation, recording) at many more frames per
        # minute than the real network allows on a loaded machine: per-frame accumulation shows sooner.
        model = bs.write_tiny_pose_model(SOAK_DIR / "tiny_pose_model.onnx")
    result["model"] = str(model) if model else "the embedded default model"
    server = bs.start_server(port, data_dir, model, SOAK_DIR / "live_server.log")
    soak_s = args.minutes * 60.0
    samples: list[dict] = []
    try:
        bs.wait_healthy(port, server, 60.0)
        with sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(SOAK_DIR / "chromium-profile"), executable_path=bs.chromium_path(), headless=True,
                args=[*bs.CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={camera}"],
                viewport={"width": 1400, "height": 1000})
            try:
                page = browser.new_page()
                # Through the server's login page, with the account start_server wrote.
                bs.log_in(page, port, "/", timeout_s=60.0)
                pseudonym = page.get_by_label("New pseudonym")
                pseudonym.fill("P-SOAK", timeout=60_000)
                pseudonym.press("Enter")
                page.get_by_role("button", name="Record").wait_for(timeout=60_000)
                page.frame_locator(bs.WEBRTC_IFRAME).get_by_role("button", name="START").click(timeout=60_000)
                bs.wait_for(lambda: bs.number(bs.metrics(page).get("Frames with a pose")) >= 10, 60.0)
                record = page.get_by_role("button", name="Record")
                expect(record).to_be_enabled(timeout=30_000)
                record.click()
                t0 = time.monotonic()
                restarts: list[dict] = []
                last_received, last_change = -1.0, time.monotonic()
                while time.monotonic() - t0 < soak_s:
                    m = bs.metrics(page)
                    received = bs.number(m.get("Frames received"))
                    samples.append(_sample(t0, tree_rss_bytes(server.pid), received=received,
                                           with_pose=bs.number(m.get("Frames with a pose")),
                                           fps=bs.number(m.get("Processing FPS"))))
                    if received != last_received:
                        last_received, last_change = received, time.monotonic()
                    elif time.monotonic() - last_change > STREAM_STALL_S:
                        # The stream ended (the server log says why): start it again as a therapist would,
                        # and record on, so that the soak goes on in the same server process.
                        restarts.append(_restart_stream(page, bs, t0, received))
                        last_change = time.monotonic()
                    time.sleep(args.interval)
                result["stream_restarts"] = restarts
                result["soak_s"] = round(time.monotonic() - t0, 1)
                page.screenshot(path=str(SOAK_DIR / "live_soak_recording.png"))
                page.get_by_role("button", name="Stop and save the recording").click(timeout=60_000)
                saved = page.get_by_text("Recording saved")
                saved.wait_for(timeout=180_000)
                result["saved_message"] = saved.inner_text()
                samples.append(_sample(t0, tree_rss_bytes(server.pid), note="after saving"))
                page.screenshot(path=str(SOAK_DIR / "live_soak_saved.png"))
            finally:
                browser.close()
    finally:
        result.update(samples=samples, **growth(samples, args.warmup_s))
        bs.stop_server(server)
    return result


def _restart_stream(page, bs, t0: float, received: float) -> dict:
    """STOP and START the camera in the page, then Record again; what happened, for the result."""
    event = {"t_s": round(time.monotonic() - t0, 1), "received_before": received}
    print(f"stream stalled at {received} frames received: restarting it", flush=True)
    try:
        frame = page.frame_locator(bs.WEBRTC_IFRAME)
        stop = frame.get_by_role("button", name="STOP")
        if stop.count():
            stop.click(timeout=30_000)
        frame.get_by_role("button", name="START").click(timeout=60_000)
        record = page.get_by_role("button", name="Record")
        record.wait_for(timeout=60_000)
        bs.wait_for(lambda: bs.number(bs.metrics(page).get("Frames received")) > received, 60.0)
        record.click(timeout=60_000)
        event["ok"] = True
    except Exception as err:  # noqa: BLE001 - reported in the result; the soak samples on
        event.update(ok=False, error=f"{type(err).__name__}: {err}"[:300])
    return event


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    batch = sub.add_parser("batch", help="a long clip through `rehab process`")
    batch.add_argument("--clip", type=Path, default=None, help="a video (default: a generated squat clip)")
    batch.add_argument("--seconds", type=float, default=3600.0, help="length of the generated clip")
    batch.add_argument("--size", default="96x160", help="WIDTHxHEIGHT of the generated clip")
    batch.add_argument("--fps", type=float, default=30.0)
    batch.add_argument("--no-pdf", action="store_true")
    batch.add_argument("--warmup-s", type=float, default=60.0)
    batch.add_argument("--interval", type=float, default=30.0, help="seconds between RSS samples")
    batch.add_argument("--json", type=Path, default=None)
    live = sub.add_parser("live", help="a long live session in Chromium (run as root: it uses unshare -n)")
    live.add_argument("--minutes", type=float, default=30.0)
    live.add_argument("--clip", type=Path, default=None, help=f"camera source video (default: {LIVE_CLIP})")
    live.add_argument("--model", type=Path, default=None)
    live.add_argument("--test-model", action="store_true",
                      help="a tiny real ONNX model (tests/e2e/browser_support.py) instead of the pose network")
    live.add_argument("--warmup-s", type=float, default=120.0)
    live.add_argument("--interval", type=float, default=30.0)
    live.add_argument("--json", type=Path, default=None)
    live.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    report = sub.add_parser("report", help="the report phase's memory in this process, short vs long tables")
    report.add_argument("--frames", type=int, nargs="+", default=[3000, 108000])
    report.add_argument("--reports", type=int, default=10, help="reports written in a row per table length")
    report.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.what == "live" and not args.inside:
        # The browser and the server meet on a veth pair in a private network namespace (WebRTC skips
        # loopback), so the session itself runs in a child inside `unshare -n`.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
        return subprocess.run(["unshare", "-n", sys.executable, *sys.argv, "--inside"], cwd=REPO, env=env,
                              check=False).returncode
    conditions = machine()  # load average at the start
    runners = {"batch": run_batch_soak, "live": run_live_soak, "report": run_report_cost}
    result = runners[args.what](args)
    result["machine"] = conditions
    finish(result, args.json)
    summary = {k: v for k, v in result.items() if k not in ("samples", "log_tail", "machine")}
    print(json.dumps(summary, indent=1))
    return 0 if result.get("exit_code", 0) == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
