"""Server memory while uploads are accepted: resident memory (RSS) of the dashboard's server before, right after
and a while after a logged-in client uploads several files of a given size into its Streamlit session.

    PYTHONPATH=. python benchmarks/bench_upload_memory.py [--uploads 5] [--mb 20] [--hold-s 30] [--json F]

The real `rehab app` server on loopback (tests/integration/test_app_security.py's helpers: a users file, the
tiny test model), a real login, a Streamlit session opened over the websocket as the browser does, then the
uploads as the browser sends them (multipart, XSRF cookie and header) from a plain socket. RSS is read from
/proc/<server pid>/status. Streamlit's own upload route keeps every accepted file in memory for the life of
the session; the gateway's route streams it to the data folder instead, so RSS should not move by the
uploaded size.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.common import finish, machine  # noqa: E402

logger = logging.getLogger(__name__)
MB = 1024 * 1024


def run(uploads: int, size_mb: int, hold_s: float) -> dict:
    from tests.integration import test_app_security as sec

    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        server = sec._start(Path(tmp), {"REHAB_APP_MAX_UPLOAD_MB": str(size_mb + 5)})
        try:
            cookie = sec._cookie(server)
            with sec.OpenPage(server, cookie, page="video") as page:
                path = f"/_stcore/upload_file/{page.session_id}"
                pid = server.server_pid()
                # One small upload first, so that the code paths themselves are loaded before the baseline.
                sec.upload(server, f"{path}/warm-up", MB, cookie)
                time.sleep(2.0)
                before = sec._rss_kb(pid) / 1024
                t0 = time.monotonic()
                statuses = [sec.upload(server, f"{path}/file-{i}", size_mb * MB, cookie)[0] for i in range(uploads)]
                elapsed = time.monotonic() - t0
                after = sec._rss_kb(pid) / 1024
                time.sleep(hold_s)
                held = sec._rss_kb(pid) / 1024
                on_disk = sum(p.stat().st_size for p in server.data_dir.rglob("*") if p.is_file()) / MB
        finally:
            sec._stop(server)
    result = {"uploads": uploads, "upload_mb": size_mb, "statuses": statuses, "upload_s": round(elapsed, 1),
              "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
              f"rss_after_{hold_s:g}s_mb": round(held, 1), "growth_mb": round(max(after, held) - before, 1),
              "data_folder_mb": round(on_disk, 1)}
    print("  ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--uploads", type=int, default=5)
    p.add_argument("--mb", type=int, default=20, help="size of each upload in MB")
    p.add_argument("--hold-s", type=float, default=30.0, help="seconds to wait before the last RSS reading")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    conditions = machine()
    result = run(args.uploads, args.mb, args.hold_s)
    finish({"machine": conditions, **result}, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
