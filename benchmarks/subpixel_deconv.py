"""Rewrite stride-2 ConvTranspose nodes of an ONNX file as four 2x2 Convs + DepthToSpace, check, compare speed.

The rewrite itself is the export pass export.subpixel (see its module doc for the maths); `rehab export` applies
it by default, so a file exported since then has nothing left to rewrite and OUT is then a plain copy. This
script makes the sub-pixel form of an older file and times both in ONNX Runtime:

    PYTHONPATH=. python benchmarks/subpixel_deconv.py IN.onnx OUT.onnx      # rewrite, check, compare speed
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from export.subpixel import rewrite_with_report


def _time(path: Path, x: np.ndarray, threads: int, runs: int) -> tuple[np.ndarray, float]:
    from rehab.runtime.session import create_session

    session, _ = create_session(path, providers="cpu", threads=threads)
    name = session.get_inputs()[0].name
    y = session.run(None, {name: x})[0]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return y, float(np.median(times)) * 1e3


def main(argv: list[str] | None = None) -> int:
    import onnx

    from export.onnx_export import save_single_file

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args(argv)
    model = onnx.load(str(args.input))
    new, report = rewrite_with_report(model)  # raises SubpixelError when the rewritten graph does not match
    save_single_file(new, args.output)
    print(f"rewrote {report.deconvolutions} ConvTranspose node(s): {args.output}")
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal([args.batch, *dims[1:]]).astype(np.float32)
    y0, t0 = _time(args.input, x, args.threads, args.runs)
    y1, t1 = _time(args.output, x, args.threads, args.runs)
    print(f"max |difference| {np.abs(y0 - y1).max():.2e} (output range {np.abs(y0).max():.2e}); "
          f"median {t0:.2f} -> {t1:.2f} ms at batch {args.batch}, {args.threads} threads ({t0 / t1:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
