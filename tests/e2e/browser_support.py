"""Helpers for the dashboard tests: a tiny real ONNX pose model, Y4M clips, video reading, face checks.

Also runnable as ``python -m tests.e2e.browser_support live-session ...`` inside a private network
namespace: it starts the Streamlit server, drives headless Chromium with a fake camera through the live page
and writes what it saw as JSON for the test to assert on (see tests/e2e/test_browser_live.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
# The live recording must hold at least this many frames with a pose (the test asserts >= 10 rows).
MIN_RECORDED_POSES = 15
# Time kept back from a long recording for stopping, saving and playing it back.
RECORD_STOP_RESERVE_S = 40.0
CHROMIUM = "/usr/bin/chromium"
# A documentation-only address (RFC 5737 TEST-NET-2) on a veth pair inside the private namespace: WebRTC
# needs a non-loopback interface (aiortc never offers 127.0.0.1, Chromium skips loopback candidates).
TEST_ADDRESS = "198.51.100.1/24"
VETH = ("rehab-e2e0", "rehab-e2e1")
WEBRTC_IFRAME = 'iframe[title="streamlit_webrtc.component.webrtc_streamer"]'
CHROMIUM_ARGS = (
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
)

# --------------------------------------------------------------------------------------------------
# a tiny but real pose model file


def write_tiny_pose_model(path: Path, input_size: tuple[int, int] = (64, 64), seed: int = 0) -> Path:
    """A valid self-describing ONNX pose model (LSP-14 joints): average-pool by 4, then a 1x1 convolution.

    Its poses are meaningless, but it exercises the real loading, metadata and inference path in
    milliseconds, so page tests do not depend on a trained model being present.
    """
    import onnx
    from onnx import TensorProto, helper

    from rehab.core.skeleton import LSP14
    from rehab.runtime.metadata import ModelInfo, to_metadata_props

    stride = 4
    w, h = input_size
    k = LSP14.num_joints
    weights = np.random.default_rng(seed).normal(0.0, 0.5, size=(k, 3, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("AveragePool", ["image"], ["pooled"], kernel_shape=[stride, stride], strides=[stride, stride]),
         helper.make_node("Conv", ["pooled", "w"], ["conv"]),
         helper.make_node("Sigmoid", ["conv"], ["heatmaps"])],
        "tiny_pose",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, h, w])],
        [helper.make_tensor_value_info("heatmaps", TensorProto.FLOAT, ["N", k, h // stride, w // stride])],
        [helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    info = ModelInfo(
        name="tiny-test-model", joint_names=LSP14.joints, limbs=LSP14.limbs, flip_pairs=LSP14.flip_pairs,
        input_size=(w, h), heatmap_size=(w // stride, h // stride), heatmap_stride=float(stride),
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), backbone="avgpool+conv1x1 (test)",
        training={"data": "none: random weights for tests"}, metrics={"lsp_pck@0.2": 0.0},
        exported_at="2026-11-26T00:00:00+00:00", code_version="test")
    for key, value in to_metadata_props(info).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------------------------------
# clips


def read_frames(path: Path, every: int = 1, max_side_px: int | None = None, limit: int | None = None) -> list[np.ndarray]:
    """Decoded BGR frames of a video (every n-th, optionally downscaled so the longer side fits)."""
    import av
    import cv2

    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % every:
                continue
            image = frame.to_ndarray(format="bgr24")
            if max_side_px and max(image.shape[:2]) > max_side_px:
                s = max_side_px / max(image.shape[:2])
                size = (int(round(image.shape[1] * s / 2)) * 2, int(round(image.shape[0] * s / 2)) * 2)
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            frames.append(image)
            if limit and len(frames) >= limit:
                break
    if not frames:
        raise ValueError(f"no video frames could be decoded from {path}")
    return frames


def write_y4m(frames_bgr: list[np.ndarray], path: Path, fps: int) -> Path:
    """Frames as an uncompressed YUV4MPEG2 (4:2:0) file, the format Chromium's fake camera reads."""
    import cv2

    h, w = frames_bgr[0].shape[:2]
    if w % 2 or h % 2:
        raise ValueError(f"Y4M 4:2:0 needs even frame sides, got {w}x{h}")
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for image in frames_bgr:
            # OpenCV's I420 layout is the planar Y, U, V order that Y4M expects.
            f.write(b"FRAME\n" + cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


# OpenCV's "alt2" frontal-face cascade on equalised grey: unlike the default cascade it did not fire on the
# smooth blobs and block edges that pixelation leaves (measured on a 79-frame recording: default cascade 9
# false detections, alt2 none), and it still finds a real face down to about 30 px across.
# Two cascades the anonymiser does not use; a face counts where both find one at the same place, since one
# cascade alone fires on drawn labels, letterbox edges and pixelation blocks.
FACE_CASCADES = ("haarcascade_frontalface_alt2.xml", "haarcascade_frontalface_alt.xml")
FACE_MIN_SIDE_PX = 16
FACE_AGREEMENT_IOU = 0.3


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    return inter / float(aw * ah + bw * bh - inter)


def face_boxes(image_bgr: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) that both Haar cascades find at the same place."""
    import cv2

    gray = cv2.equalizeHist(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY))
    first, second = (cv2.CascadeClassifier(cv2.data.haarcascades + name).detectMultiScale(
        gray, scaleFactor=1.1, minNeighbors=5, minSize=(FACE_MIN_SIDE_PX, FACE_MIN_SIDE_PX)) for name in FACE_CASCADES)
    return [tuple(int(v) for v in a) for a in first if any(_iou(a, b) >= FACE_AGREEMENT_IOU for b in second)]


def count_faces(frames_bgr: list[np.ndarray]) -> list[int]:
    """Faces found by two Haar detectors in agreement in each frame (an independent check of the blurring)."""
    return [len(face_boxes(image)) for image in frames_bgr]


def faces_shown_where_raw_had_one(written: list[np.ndarray], raw: list[np.ndarray]) -> tuple[int, int]:
    """(faces on the raw camera frames, written-frame faces at a place where a raw frame had one).

    Drawn labels next to the letterbox's black edge can fool both cascades; a written detection counts as a
    face only where the camera really showed one.
    """
    raw_boxes = [box for image in raw for box in face_boxes(image)]
    shown = sum(any(_iou(box, r) >= FACE_AGREEMENT_IOU for r in raw_boxes)
                for image in written for box in face_boxes(image))
    return len(raw_boxes), shown


# --------------------------------------------------------------------------------------------------
# environment checks (used by the test to skip or fail with a reason)


def chromium_path() -> str | None:
    found = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    return found


def netns_problem() -> str | None:
    """Why a private network namespace cannot be made here, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to create a private network namespace (unshare -n); CI runs as root"
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (util-linux / iproute2)"
    probe = subprocess.run(["unshare", "-n", "ip", "link", "show", "lo"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot create a private network namespace here (a container without CAP_SYS_ADMIN?): " \
               f"{probe.stderr.strip()[:200]}"
    return None


# --------------------------------------------------------------------------------------------------
# inside the namespace: network, server, browser


def setup_network() -> None:
    """Loopback up, and a veth pair carrying TEST_ADDRESS (call inside ``unshare -n`` only)."""
    a, b = VETH
    # No IPv6 on the test links: its link-local addresses appear a moment after "up", and Chromium aborts
    # requests in flight with ERR_NETWORK_CHANGED when the addresses change.
    for conf in ("all", "default"):
        Path(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6").write_text("1")
    for cmd in (["ip", "link", "set", "lo", "up"],
                ["ip", "link", "add", a, "type", "veth", "peer", "name", b],
                ["ip", "addr", "add", TEST_ADDRESS, "dev", a],
                ["ip", "link", "set", a, "up"],
                ["ip", "link", "set", b, "up"]):
        subprocess.run(cmd, check=True, capture_output=True, text=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PERMISSIVE_UMASK = 0o022
# The account the browser tests log in with (written to the data folder's users file before the server starts).
TEST_USER, TEST_PASSWORD = "therapist-e2e", "e2e-password-123"


def stop_server(server: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """Stop a server started by the tests: SIGTERM, then SIGKILL if it has not ended within ``timeout_s``."""
    server.terminate()
    try:
        server.wait(timeout_s)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def start_server(port: int, data_dir: Path, model: Path | None, log_path: Path, threads: int = 1,
                 accounts: dict[str, str] | None = None, max_upload_mb: int | None = None) -> subprocess.Popen:
    """The real `rehab app` server (rehab/app/server.py behind its login) with these accounts (name: password)."""
    from rehab.accounts import add_user
    from rehab.app.launch import build_command, build_env
    from rehab.app_settings import AppSettings

    for name, password in (accounts if accounts is not None else {TEST_USER: TEST_PASSWORD}).items():
        add_user(data_dir / "users.json", name, password)
    settings = AppSettings(data_dir=data_dir, model_path=model, threads=threads,
                           **({"max_upload_mb": max_upload_mb} if max_upload_mb else {}))
    log = log_path.open("w")
    env = {k: v for k, v in build_env(settings).items() if k != "REHAB_APP_PASSWORD"}
    return subprocess.Popen(build_command("127.0.0.1", port, settings), env=env, cwd=str(REPO_ROOT),
                            stdout=log, stderr=subprocess.STDOUT)


def write_self_signed_cert(folder: Path, name: str = "server") -> tuple[Path, Path]:
    """A real self-signed certificate and key for 127.0.0.1 (PEM), made with `cryptography`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rehab test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def log_in(page, port: int, path: str = "/", user: str = TEST_USER, password: str = TEST_PASSWORD,
           timeout_s: float = 30.0) -> None:
    """Open ``path``, which the server answers with its login page, and log in through that page's form."""
    page.goto(f"http://127.0.0.1:{port}{path}", timeout=timeout_s * 1000)
    page.wait_for_url("**/login?next=**", timeout=timeout_s * 1000)
    page.fill("#user", user, timeout=timeout_s * 1000)
    page.fill("#password", password, timeout=timeout_s * 1000)
    page.get_by_role("button", name="Log in").click(timeout=timeout_s * 1000)
    page.wait_for_url(lambda url: "/login" not in url, timeout=timeout_s * 1000)


def private_mode_problems(root: Path) -> list[str]:
    """Folders under ``root`` that are not 0700 and files that are not 0600 (empty when all are private)."""
    import stat

    problems = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            problems.append(f"{path.relative_to(root.parent)}: {mode:o}")
    return problems


def wait_healthy(port: int, server: subprocess.Popen, timeout_s: float) -> float:
    """Seconds until Streamlit answers its health check; raises when it exits or times out."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if server.poll() is not None:
            raise RuntimeError(f"the Streamlit server exited with code {server.returncode} before answering")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"Streamlit did not answer /_stcore/health within {timeout_s} s")


# A metric tile that cannot be read this quickly was removed by a rerun of the page.
METRIC_READ_TIMEOUT_MS = 2000


def metrics(page) -> dict[str, str]:
    """The st.metric tiles on the page as {label: value}."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    out = {}
    for tile in page.locator('[data-testid="stMetric"]').all():
        try:
            label = tile.locator('[data-testid="stMetricLabel"]').inner_text(timeout=METRIC_READ_TIMEOUT_MS).strip()
            out[label] = tile.locator('[data-testid="stMetricValue"]').inner_text(
                timeout=METRIC_READ_TIMEOUT_MS).strip()
        except PlaywrightTimeout:
            continue  # the tile was replaced by a rerun between listing and reading: the next sample has it
    return out


def number(text: str | None) -> float:
    try:
        return float((text or "").split()[0].replace(",", ""))
    except (ValueError, IndexError):
        return float("nan")


def wait_for(predicate, timeout_s: float, step_s: float = 0.25):
    """Poll ``predicate`` until it returns a truthy value (returned) or the time is up (returns None)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step_s)
    return None


def camera_frames(source: Path, size: tuple[int, int] = (640, 480), every: int = 2) -> list[np.ndarray]:
    """Every n-th frame of a real video, letterboxed into ``size`` (w, h): what the fake camera shows.

    Chromium's fake camera crops its file to the requested aspect ratio; letterboxing keeps the whole
    person (the shared clips are portrait) in a webcam-shaped landscape frame.
    """
    import cv2

    w, h = size
    out = []
    for image in read_frames(source, every=every):
        s = min(w / image.shape[1], h / image.shape[0])
        small = cv2.resize(image, (int(image.shape[1] * s), int(image.shape[0] * s)), interpolation=cv2.INTER_AREA)
        top, left = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
        canvas = np.zeros((h, w, 3), np.uint8)
        canvas[top:top + small.shape[0], left:left + small.shape[1]] = small
        out.append(canvas)
    return out


def make_camera_clip(source: Path, target: Path, size: tuple[int, int] = (640, 480), fps: int = 30,
                     every: int = 2) -> Path:
    """A Y4M fake-camera clip of ``camera_frames``."""
    return write_y4m(camera_frames(source, size, every), target, fps)


# --------------------------------------------------------------------------------------------------
# the live-page session, run inside the namespace


def _video_state(page) -> dict:
    """Ready state, duration and play position of the recording's <video> element on the page."""
    return page.evaluate("""() => {
        const v = [...document.querySelectorAll('video')].find(e => e.src && e.src.includes('/files/'));
        if (!v) return null;
        return {readyState: v.readyState, duration: v.duration, currentTime: v.currentTime,
                error: v.error ? v.error.code : null, width: v.videoWidth, height: v.videoHeight};
    }""")


def _status_without_cookie(url: str) -> int:
    import urllib.error

    try:
        with urllib.request.urlopen(url, timeout=10) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


def _no_camera(pw, port: int, left) -> dict:
    """A browser with no camera at all: the page must say so and keep working."""
    with tempfile.TemporaryDirectory(prefix="rehab-chromium-") as profile:
        # Permission prompts auto-accepted, but no fake device: the machine has no camera.
        args = [a for a in CHROMIUM_ARGS if a != "--use-fake-device-for-media-stream"]
        browser = pw.chromium.launch_persistent_context(profile, executable_path=chromium_path(), headless=True,
                                                        args=args, viewport={"width": 1400, "height": 1000})
        try:
            page = browser.new_page()
            log_in(page, port, timeout_s=left())
            frame = page.frame_locator(WEBRTC_IFRAME)
            frame.get_by_role("button", name="START").click(timeout=left() * 1000)
            # The browser's own error under the video, and the page's explanation of it beside.
            error = frame.get_by_text("NotFoundError")
            error.wait_for(timeout=min(20.0, left()) * 1000)
            hint = page.get_by_text("no camera is connected")
            hint.wait_for(timeout=min(10.0, left()) * 1000)
            shown = {"browser": error.inner_text(), "page": hint.inner_text()}
            # The app keeps running: another page opens and answers.
            page.get_by_role("link", name="History").click(timeout=left() * 1000)
            page.get_by_role("heading", name="History").wait_for(timeout=left() * 1000)
            return {**shown, "app_still_running": True}
        finally:
            browser.close()


def run_live_session(clip: Path, data_dir: Path, model: Path | None, out: Path, screenshots: Path,
                     record_s: float, timeout_s: float) -> dict:
    """Drive the live page once: START, wait for poses, record ``record_s``, stop and save, play it back."""
    from playwright.sync_api import expect, sync_playwright

    deadline = time.monotonic() + timeout_s

    def left() -> float:
        return max(deadline - time.monotonic(), 1.0)

    setup_network()
    # A permissive umask, as on many desktops: the server must make its files owner-only all the same.
    os.umask(PERMISSIVE_UMASK)
    screenshots.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = out.with_suffix(".server.log")
    server = start_server(port, data_dir, model, log_path)
    result: dict = {"timeline": []}
    page = None
    try:
        result["server_ready_s"] = wait_healthy(port, server, min(30.0, left()))
        with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="rehab-chromium-") as profile:
            browser = pw.chromium.launch_persistent_context(
                profile, executable_path=chromium_path(), headless=True,
                args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={clip}"],
                viewport={"width": 1400, "height": 1000})
            try:
                page = browser.new_page()
                log_in(page, port, timeout_s=left())
                result["logged_in_at"] = page.url
                pseudonym = page.get_by_label("New pseudonym")
                pseudonym.fill("P-E2E", timeout=left() * 1000)
                pseudonym.press("Enter")
                page.get_by_role("button", name="Record").wait_for(timeout=left() * 1000)
                started = time.monotonic()
                page.frame_locator(WEBRTC_IFRAME).get_by_role("button", name="START").click(timeout=left() * 1000)

                def sample() -> dict:
                    m = metrics(page)
                    result["timeline"].append({"t_s": round(time.monotonic() - started, 2), **m})
                    return m

                first = wait_for(lambda: number(sample().get("Frames received")) > 0, min(30.0, left()))
                result["first_frame_after_s"] = round(time.monotonic() - started, 2) if first else None
                wait_for(lambda: number(sample().get("Frames with a pose")) >= 10, min(30.0, left()))
                record = page.get_by_role("button", name="Record")
                expect(record).to_be_enabled(timeout=min(20.0, left()) * 1000)
                record.click(timeout=left() * 1000)
                record_end = time.monotonic() + record_s
                posed_at_start = number(sample().get("Frames with a pose"))
                # On a loaded machine the pipeline may process only a few frames a second: record for at
                # least record_s and until enough frames went through it, within the session's time limit.
                while time.monotonic() < record_end or (
                        number(sample().get("Frames with a pose")) - posed_at_start < MIN_RECORDED_POSES
                        and left() > RECORD_STOP_RESERVE_S):
                    time.sleep(0.5)
                result["during_recording"] = sample()
                page.screenshot(path=str(screenshots / "live_recording.png"))
                page.get_by_role("button", name="Stop and save the recording").click(timeout=left() * 1000)
                saved = page.get_by_text("Recording saved")
                saved.wait_for(timeout=left() * 1000)
                result["saved_message"] = saved.inner_text()
                result["after_recording"] = sample()
                page.locator("video[src*='/files/']").scroll_into_view_if_needed(timeout=left() * 1000)
                result["video_loaded"] = wait_for(
                    lambda: (s := _video_state(page)) and s["readyState"] >= 2 and s, min(15.0, left()))
                page.evaluate("() => { const v = document.querySelector(\"video[src*='/files/']\"); "
                              "v.muted = true; return v.play(); }")
                result["video_played"] = wait_for(
                    lambda: (s := _video_state(page)) and s["currentTime"] > 0.5 and s, min(15.0, left()))
                page.screenshot(path=str(screenshots / "live_saved.png"))
                src = page.evaluate("() => document.querySelector(\"video[src*='/files/']\").src")
                result["media_with_cookie"] = page.request.get(src).status
                result["media_without_cookie"] = _status_without_cookie(src)
                # The recording's files are download links streamed from disk, not buttons holding their bytes.
                href = page.get_by_role("link", name="Download frames.csv").get_attribute("href", timeout=left() * 1000)
                got = page.request.get(urllib.parse.urljoin(page.url, href))
                result["download_frames_csv"] = {"status": got.status, "disposition": got.headers.get(
                    "content-disposition", ""), "bytes": len(got.body())}
                page.frame_locator(WEBRTC_IFRAME).get_by_role("button", name="STOP").click(timeout=left() * 1000)
                result["final"] = sample()
            except Exception as err:
                # Keep what was seen, and what the page looked like, for the person reading the failure.
                result["error"] = f"{type(err).__name__}: {err}"[:2000]
                if page is not None:
                    page.screenshot(path=str(screenshots / "live_failure.png"))
                raise
            finally:
                browser.close()
            result["no_camera"] = _no_camera(pw, port, left)
    finally:
        out.write_text(json.dumps(result, indent=2))
        stop_server(server)
    recordings = sorted((data_dir / "recordings").glob("*/")) if (data_dir / "recordings").is_dir() else []
    result["recordings"] = [str(p) for p in recordings]
    result["mode_problems"] = private_mode_problems(data_dir)
    out.write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    live = sub.add_parser("live-session", help="run inside `unshare -n`: drive the live page once")
    live.add_argument("--clip", type=Path, required=True, help="Y4M clip for the fake camera")
    live.add_argument("--data-dir", type=Path, required=True)
    live.add_argument("--model", type=Path, default=None)
    live.add_argument("--out", type=Path, required=True, help="JSON file for what was seen")
    live.add_argument("--screenshots", type=Path, required=True)
    live.add_argument("--record-s", type=float, default=5.0)
    live.add_argument("--timeout-s", type=float, default=100.0)
    args = parser.parse_args(argv)
    run_live_session(args.clip, args.data_dir, args.model, args.out, args.screenshots, args.record_s, args.timeout_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
