"""The LR schedule on resume follows the resolved config, and bf16 autocast needs native bf16 on the CPU."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from train.config import Config, resolve  # noqa: E402
from train.schedule import build_optimizer, build_scheduler, scheduled_lr, set_scheduled_lr  # noqa: E402
from train.predict import autocast_context, cpu_has_native_bf16  # noqa: E402


def _cfg(epochs: int, milestones: list[int], base: int) -> Config:
    cfg = Config()
    cfg.train.epochs = epochs
    cfg.optim.lr = 1e-3
    cfg.optim.lr_milestones = milestones
    cfg.optim.lr_milestones_base_epochs = base
    return resolve(cfg)


def test_scheduled_lr_counts_the_milestones_reached():
    cfg = _cfg(140, [90, 120], 140)
    assert scheduled_lr(cfg, 0) == pytest.approx(1e-3)
    assert scheduled_lr(cfg, 89) == pytest.approx(1e-3)
    assert scheduled_lr(cfg, 90) == pytest.approx(1e-4)
    assert scheduled_lr(cfg, 120) == pytest.approx(1e-5)


def test_resume_with_a_milestone_moved_to_the_resume_epoch_decays_at_once_and_later():
    model = torch.nn.Linear(2, 2)
    first = _cfg(60, [90, 120], 140)  # milestones 39, 51: epochs 0-14 ran at 1e-3
    opt = build_optimizer(model, first)
    sched = build_scheduler(opt, first)
    for _ in range(15):
        opt.step()
        sched.step()
    state_opt, state_sched = opt.state_dict(), sched.state_dict()
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-3)

    resumed = _cfg(21, [15, 19], 21)  # decay now (epoch index 15) and at 19
    opt2 = build_optimizer(model, resumed)
    sched2 = build_scheduler(opt2, resumed)
    opt2.load_state_dict(state_opt)
    sched2.load_state_dict(state_sched)
    from collections import Counter

    sched2.milestones = Counter(resumed.optim.scaled_milestones)
    set_scheduled_lr(opt2, sched2, resumed, 15)
    lrs = []
    for _ in range(15, 21):
        lrs.append(opt2.param_groups[0]["lr"])
        opt2.step()
        sched2.step()
    assert lrs == pytest.approx([1e-4] * 4 + [1e-5] * 2)


def test_unchanged_resume_keeps_the_lr():
    model = torch.nn.Linear(2, 2)
    cfg = _cfg(10, [5], 10)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    for _ in range(7):
        opt.step()
        sched.step()
    set_scheduled_lr(opt, sched, cfg, 7)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_bf16_autocast_only_where_the_cpu_has_native_bf16():
    ctx = autocast_context(torch.device("cpu"), cpu_bf16=True, cuda_amp=False)
    with ctx:
        out = torch.nn.Linear(4, 4)(torch.ones(1, 4))
    assert out.dtype == (torch.bfloat16 if cpu_has_native_bf16() else torch.float32)


def test_cosine_schedule_steps_per_epoch_matches_scheduled_lr_and_resumes_on_it():
    cfg = _cfg(6, [90, 120], 140)
    cfg.optim.lr_schedule = "cosine"
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg)
    seen, states = [], {}
    for epoch in range(6):
        states[epoch] = (opt.state_dict(), sched.state_dict())  # what a checkpoint after epoch - 1 holds
        seen.append(opt.param_groups[0]["lr"])
        assert seen[-1] == pytest.approx(scheduled_lr(cfg, epoch))
        opt.step()
        sched.step()
    # Full LR first, halfway at the middle epoch, a few % in the last; strictly decreasing; no milestones used.
    assert seen[0] == pytest.approx(1e-3) and seen[3] == pytest.approx(5e-4)
    assert 0 < seen[-1] < 0.1e-3 and all(a > b for a, b in zip(seen, seen[1:]))
    # A resume at epoch 4 (fresh objects + the saved states) continues on the curve.
    state_opt, state_sched = states[4]
    opt2 = build_optimizer(model, cfg)
    sched2 = build_scheduler(opt2, cfg)
    opt2.load_state_dict(state_opt)
    sched2.load_state_dict(state_sched)
    set_scheduled_lr(opt2, sched2, cfg, 4)
    assert opt2.param_groups[0]["lr"] == pytest.approx(seen[4])
    opt2.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(seen[5])


def test_an_unknown_schedule_is_refused_naming_the_choices():
    from train.config import ConfigError

    cfg = Config()
    cfg.optim.lr_schedule = "one_cycle"
    with pytest.raises(ConfigError, match="optim.lr_schedule must be one of multistep, cosine"):
        resolve(cfg)


def test_log_columns_are_named_by_the_validation_metric(tmp_path):
    """A run validated with PCKh logs val_pckh and pckh_<joint>, never PCKh under a PCK name."""
    from train.engine import CsvLog
    from train.plots import read_log, val_column

    for metric in ("pck", "pckh"):
        path = tmp_path / f"{metric}.csv"
        CsvLog(path, ("left_knee",), metric=metric).append({"epoch": 1, f"val_{metric}": 50.0,
                                                             f"{metric}_left_knee": 40.0})
        header = path.read_text().splitlines()[0].split(",")
        assert f"val_{metric}" in header and f"{metric}_left_knee" in header
        assert ("val_pck" in header) == (metric == "pck")
        log = read_log(path)
        assert val_column(log) == f"val_{metric}" and log[val_column(log)][0] == 50.0
