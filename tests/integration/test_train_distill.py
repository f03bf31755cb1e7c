"""Knowledge distillation: a real (tiny) teacher checkpoint, its flip ensemble against the evaluation's flip test,
the blended targets, and a distilled run that learns toward the teacher."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rehab.core.heatmaps import merge_flip  # noqa: E402
from rehab.core.skeleton import get_joint_set  # noqa: E402
from tests.tiny_train import TINY_TRAIN  # noqa: E402
from train.config import load_config  # noqa: E402
from train.distill import Teacher, blend_targets  # noqa: E402
from train.engine import fit  # noqa: E402

TINY = TINY_TRAIN + ["augment.preset=strong", "train.cpu_bf16=false", "train.epochs=1", "optim.lr_milestones=[]"]


@pytest.fixture(scope="module")
def teacher_ckpt(shared_dir, require_data, tmp_path_factory):
    require_data(shared_dir / "data/lsp/joints.mat")
    run = tmp_path_factory.mktemp("teacher")
    fit(load_config(None, TINY + [f"data.root={shared_dir}"]), run)
    return run / "last.pt"


def test_blend_mixes_annotated_joints_and_lets_the_teacher_fill_the_rest():
    target = torch.zeros(2, 3, 4, 4)
    target[:, :, 1, 1] = 1.0
    teacher = torch.full((2, 3, 4, 4), 0.2)
    weight = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    mixed, w = blend_targets(target, weight, teacher, alpha=0.25)
    assert torch.allclose(mixed[0, 0, 1, 1], torch.tensor(0.75 * 1.0 + 0.25 * 0.2))
    assert torch.allclose(mixed[0, 0, 0, 0], torch.tensor(0.25 * 0.2))
    assert torch.equal(mixed[0, 1], teacher[0, 1]) and torch.equal(mixed[1, 0], teacher[1, 0])
    assert torch.equal(w, torch.ones_like(weight))
    assert torch.equal(blend_targets(target, weight, teacher, alpha=0.0)[0][0, 0], target[0, 0])
    with pytest.raises(ValueError, match="distill_alpha"):
        blend_targets(target, weight, teacher, alpha=1.5)
    with pytest.raises(ValueError, match="differ"):
        blend_targets(target, weight, teacher[:, :, :2], alpha=0.5)


def test_the_teachers_flip_ensemble_is_the_evaluations_flip_test(teacher_ckpt, shared_dir):
    cfg = load_config(None, TINY + [f"data.root={shared_dir}"])
    teacher = Teacher(str(teacher_ckpt), cfg.model, torch.device("cpu"), flip=True)
    plain = Teacher(str(teacher_ckpt), cfg.model, torch.device("cpu"), flip=False)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ens = teacher.heatmaps(images, (16, 16)).numpy()
    one = plain.heatmaps(images, (16, 16)).numpy()
    mirrored = plain.heatmaps(torch.flip(images, dims=[3]), (16, 16)).numpy()
    perm = get_joint_set(cfg.model.joint_set).flip_permutation
    np.testing.assert_allclose(ens, merge_flip(one, mirrored, perm, shift=True), atol=1e-5)
    assert not np.allclose(ens, one)
    # a student of another size gets the teacher's maps resized to its own
    assert teacher.heatmaps(torch.zeros(1, 3, 96, 96, dtype=torch.uint8), (24, 24)).shape == (1, 14, 24, 24)


def test_a_teacher_of_other_joints_is_refused(teacher_ckpt, shared_dir):
    cfg = load_config(None, TINY + [f"data.root={shared_dir}", "model.joint_set=mpii16"])
    with pytest.raises(ValueError, match="same joints"):
        Teacher(str(teacher_ckpt), cfg.model, torch.device("cpu"))


def test_a_distilled_run_moves_toward_the_teacher(teacher_ckpt, shared_dir, tmp_path):
    """The same start, one epoch with the teacher's maps as the whole target (alpha 1) and one without: the
    distilled student ends closer to the teacher's heatmaps on held-out images."""
    base = TINY + [f"data.root={shared_dir}", "train.epochs=3", "optim.lr=0.003",
                   "data.train=[{kind: lsp, path: data/lsp, split: train, start: 200, limit: 16}]"]
    runs = {}
    for name, extra in (("plain", []), ("distilled", [f"train.distill_from={teacher_ckpt}", "train.distill_alpha=1.0",
                                                        "train.distill_flip=false"])):
        fit(load_config(None, base + extra), tmp_path / name)
        runs[name] = tmp_path / name / "last.pt"
    cfg = load_config(None, base)
    teacher = Teacher(str(teacher_ckpt), cfg.model, torch.device("cpu"), flip=False)
    images = torch.randint(0, 256, (4, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    goal = teacher.heatmaps(images, (16, 16))
    gaps = {name: float((Teacher(str(path), cfg.model, torch.device("cpu"), flip=False).heatmaps(images, (16, 16))
                         - goal).pow(2).mean()) for name, path in runs.items()}
    assert gaps["distilled"] < gaps["plain"], gaps
