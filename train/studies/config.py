"""Study configuration and the arms each study runs.

A study is a few ordinary training runs ("arms") that differ in one factor, trained with the same budget
(training images seen) and seed, and evaluated on the same source and target test images:

- augmentation (paper Tables 1-2): one arm per augmentation level, trained on the source domain;
- mixed (Table 3): source only vs source + a small target-domain subset mixed at the paper's ratio
  (12,000 MPII : 700 LSP people);
- finetune (Tables 4-5): a source-trained base model, then fine-tuned on the target's training split at
  several constant learning rates, to see adaptation against catastrophic forgetting;
- ablation (issue 16): one-factor changes of a training recipe, each arm = the baseline recipe plus a few
  ``key=value`` overrides, all scored on validation images held out of the *training* data (the last LSPET
  images and the last LSP train images), so that no choice made from an ablation has seen LSP test.

``StudyConfig`` holds the study's own settings (flat keys) and names a training config (YAML under
train/configs/) for the arms' network, optimiser and loop; ``plan_arms`` turns it into ``ArmPlan``s.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from train.config import (
    REPO_ROOT,
    apply_overrides,
    Config,
    ConfigError,
    SourceConfig,
    _check_choice,
    data_root,
    from_dict,
    load_config,
    parse_override,
    read_yaml_mapping,
    set_dotted,
    to_dict,
)

logger = logging.getLogger(__name__)

STUDY_KINDS = ("augmentation", "mixed", "finetune", "ablation")
DOMAINS = ("auto", "mpii", "lspet", "lsp")
METRICS = ("pck", "pckh")
PRESETS = ("cpu", "paper")
STUDY_CONFIG_DIR = REPO_ROOT / "train" / "configs" / "studies"
# The top-level sections of a training config: `--set model.x=...` goes to the arms' training config.
TRAIN_SECTIONS = ("model", "data", "augment", "optim", "train", "eval", "finetune")

DEFAULT_BASELINES = {"augmentation": "normal", "mixed": "source", "finetune": "base", "ablation": "baseline"}
ABLATION_BASE_ARM = "baseline"
MIXED_SOURCE_ARM = "source"
MIXED_ARM = "mixed"
FINETUNE_BASE_ARM = "base"


@dataclass
class AblationArm:
    """One arm of an ablation study: the baseline recipe with ``set`` (training-config ``key=value``) on top.

    evaluate_arm: instead of training, score that (earlier) arm's final model with ``set`` applied to how it is
        evaluated: model.heatmap_decoding and eval.* only (e.g. DARK decoding or a flip test at no training cost).
    """

    name: str = ""
    description: str = ""
    set: list[str] = field(default_factory=list)
    evaluate_arm: str = ""


@dataclass
class StudyConfig:
    """Settings of one study (flat keys; YAML files in train/configs/studies/).

    budget_images: training images seen by every (non-fine-tuning) arm, split into ``epochs`` equal epochs
        (checkpoint, resume and learning-curve granularity); each epoch draws its images afresh from the
        training sources (with replacement), so the budget need not be a multiple of a dataset's size.
    source / target: domains; auto = mpii when the MPII images are present, else lspet.
    source_holdout: LSPET as a source: its last N images are the source test set and no arm trains on them.
    *_limit: evaluate/train on that many evenly spaced entries (small smoke runs and tests; None = all).
    val_limit: target test images scored after every epoch (the per-joint learning curves only; 0 = none; the
        final model of every arm is its last checkpoint, never selected on test data).
    target_holdout: ablation studies: LSP train's last N images are the target validation set (with the
        source_holdout LSPET images); no arm trains on them, and LSP test is not read at all.
    ablation_arms: ablation studies: the arms besides the baseline (name, description, overrides).
    """

    kind: str = "augmentation"
    source: str = "auto"
    target: str = "lsp"
    train_config: str = "train/configs/studies/cpu_mnv2_128.yaml"  # relative to the repository
    train_set: list[str] = field(default_factory=list)  # key=value overrides of the training config
    budget_images: int = 48000
    epochs: int = 8
    seeds: list[int] = field(default_factory=lambda: [0])
    arms: list[str] = field(default_factory=list)  # empty = every arm of the study
    baseline: str = ""  # empty = DEFAULT_BASELINES[kind]
    primary_metric: str = "pck"  # pck: PCK@0.2 over the 12 limb joints (torso) | pckh: PCKh@0.5
    source_holdout: int = 500
    target_holdout: int = 200
    source_train_limit: int | None = None
    target_train_limit: int | None = None
    source_test_limit: int | None = None
    target_test_limit: int | None = None
    val_limit: int | None = 200
    eval_crop: str = "person"  # person (annotated joints' box, as training crops) | full_image (letterboxed)
    flip_test: bool = False
    augment_levels: list[str] = field(default_factory=lambda: ["none", "normal", "weak", "strong"])
    study_augment: str = "strong"  # augmentation of the mixed and fine-tuning studies' arms
    # The paper's mix: 12,000 MPII people next to 700 LSP people (a fixed subset of LSP train).
    mix_source_ratio: float = 12000.0
    mix_target_ratio: float = 700.0
    mix_target_images: int = 700
    finetune_lrs: list[float] = field(default_factory=lambda: [1e-3, 1e-4, 5e-5, 1e-5])
    finetune_budget_images: int = 12000
    finetune_epochs: int = 4
    base_checkpoint: str = ""  # finetune: start from this model (evaluated as the base arm) instead of training it
    ablation_arms: list[AblationArm] = field(default_factory=list)
    n_boot: int = 2000
    ci: float = 0.95
    stats_seed: int = 0


@dataclass(frozen=True)
class ArmPlan:
    """One training run of a study.

    run_id: folder name under <out>/arms/: the arm name, with _seed<k> for seeds other than 0.
    train: the run's training config (unresolved); finetune arms get finetune.checkpoint at run time.
    init_from: the run_id whose final checkpoint a fine-tuning arm starts from ("" = ImageNet backbone).
    checkpoint: evaluate this existing model instead of training (a given base model).
    evaluate_from: evaluate the final model of this run_id instead of training (decode-only ablations), with
        ``decode_set`` (model.heatmap_decoding overrides) applied to the checkpoint's config.
    """

    name: str
    seed: int
    run_id: str
    description: str
    train: Config
    init_from: str = ""
    checkpoint: str = ""
    evaluate_from: str = ""
    decode_set: tuple[str, ...] = ()


# Keys an evaluate-only ablation arm may change: how a trained model is decoded and scored, not the model.
EVALUATE_ONLY_KEYS = ("model.heatmap_decoding",)
EVALUATE_ONLY_SECTIONS = ("eval",)


@dataclass(frozen=True)
class Domains:
    """Resolved domains: names and their train/test sources (one SourceConfig per test set)."""

    source: str
    target: str
    source_train: SourceConfig
    source_test: SourceConfig
    target_train: SourceConfig
    target_test: SourceConfig

    def test_sets(self) -> dict[str, SourceConfig]:
        return {"source": self.source_test, "target": self.target_test}


# ----------------------------------------------------------------------------------------------
# loading


def preset_path(kind: str, preset: str) -> Path:
    _check_choice(kind, STUDY_KINDS, "study")
    _check_choice(preset, PRESETS, "--preset")
    return STUDY_CONFIG_DIR / (f"{kind}.yaml" if preset == "cpu" else f"{kind}_paper.yaml")


def split_overrides(overrides: list[str] | tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(study overrides, training-config overrides): keys starting with a training section go to the latter."""
    study, train = [], []
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        (train if key.split(".")[0] in TRAIN_SECTIONS else study).append(text)
    return study, train


def load_study_config(path: str | os.PathLike[str] | None, overrides: list[str] | tuple[str, ...] = ()) -> StudyConfig:
    """Defaults, then the YAML at ``path``, then overrides (``key=value``; training keys go to train_set)."""
    data = read_yaml_mapping(path, "study config")
    study_over, train_over = split_overrides(overrides)
    for text in study_over:
        key, value = parse_override(text)
        set_dotted(data, key, value, StudyConfig)
    try:
        cfg = from_dict(StudyConfig, data, "study")
    except ConfigError as exc:
        raise ConfigError(f"{path or 'overrides'}: {exc}") from None
    cfg.train_set = list(cfg.train_set) + train_over
    return cfg


def validate(cfg: StudyConfig) -> None:
    _check_choice(cfg.kind, STUDY_KINDS, "study kind")
    _check_choice(cfg.source, DOMAINS, "source")
    _check_choice(cfg.target, DOMAINS[1:], "target")
    _check_choice(cfg.primary_metric, METRICS, "primary_metric")
    _check_choice(cfg.eval_crop, ("person", "full_image"), "eval_crop")
    for name in ("budget_images", "epochs", "finetune_budget_images", "finetune_epochs", "n_boot",
                 "mix_target_images"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if not cfg.seeds:
        raise ConfigError("seeds must list at least one seed")
    if len(set(cfg.seeds)) != len(cfg.seeds):
        raise ConfigError(f"seeds must be distinct, got {cfg.seeds}")
    if not 0 < cfg.ci < 1:
        raise ConfigError(f"ci must lie in (0, 1), got {cfg.ci}")
    if cfg.source_holdout < 1:
        raise ConfigError(f"source_holdout must be >= 1, got {cfg.source_holdout}")
    if not (cfg.mix_source_ratio > 0 and cfg.mix_target_ratio > 0):
        raise ConfigError("mix_source_ratio and mix_target_ratio must be positive")
    if any(not lr > 0 for lr in cfg.finetune_lrs):
        raise ConfigError(f"finetune_lrs must be positive, got {cfg.finetune_lrs}")
    if cfg.target_holdout < 1:
        raise ConfigError(f"target_holdout must be >= 1, got {cfg.target_holdout}")
    names = [a.name for a in cfg.ablation_arms]
    for arm in cfg.ablation_arms:
        if not arm.name or not arm.name.replace("_", "").isalnum():
            raise ConfigError(f"ablation arm names must be letters, digits and _, got {arm.name!r}")
        if arm.name == ABLATION_BASE_ARM or names.count(arm.name) > 1:
            raise ConfigError(f"ablation arm {arm.name!r} is the baseline's name or given twice")
        if not arm.set:
            raise ConfigError(f"ablation arm {arm.name!r} changes nothing (its set list is empty)")
        if arm.evaluate_arm:
            earlier = [ABLATION_BASE_ARM] + [a.name for a in cfg.ablation_arms[:cfg.ablation_arms.index(arm)]
                                             if not a.evaluate_arm]
            if arm.evaluate_arm not in earlier:
                raise ConfigError(f"ablation arm {arm.name!r} evaluates {arm.evaluate_arm!r}, which is not a trained "
                                  f"arm listed before it ({', '.join(earlier)})")
            for text in arm.set:
                key = text.split("=", 1)[0].strip()
                if key not in EVALUATE_ONLY_KEYS and key.split(".")[0] not in EVALUATE_ONLY_SECTIONS:
                    raise ConfigError(f"ablation arm {arm.name!r} only evaluates a trained model: it may set "
                                      f"{', '.join(EVALUATE_ONLY_KEYS)} and eval.*, not {key}")
    if cfg.kind == "ablation" and cfg.source == "mpii":
        raise ConfigError("the ablation study holds validation images out of LSPET and LSP train; source must be "
                          "lspet (or auto)")


# ----------------------------------------------------------------------------------------------
# domains


def mpii_images_present(root: Path) -> bool:
    images = root / "data" / "mpii" / "images"
    return images.is_dir() and any(images.glob("*.jpg"))


def _domain_sources(name: str, cfg: StudyConfig, role: str) -> tuple[SourceConfig, SourceConfig]:
    """(train, test) sources of a domain; ``role`` picks the train/test limits."""
    train_limit = cfg.source_train_limit if role == "source" else cfg.target_train_limit
    test_limit = cfg.source_test_limit if role == "source" else cfg.target_test_limit
    crop = cfg.eval_crop
    if name == "lspet":
        # LSPET has no test split: its last `source_holdout` images are held out from every arm's training.
        return (SourceConfig(kind="lspet", path="data/lspet", split="all", stop=-cfg.source_holdout,
                             limit=train_limit),
                SourceConfig(kind="lspet", path="data/lspet", split="all", start=-cfg.source_holdout,
                             limit=test_limit, crop=crop))
    if name == "lsp":
        return (SourceConfig(kind="lsp", path="data/lsp", split="train", limit=train_limit),
                SourceConfig(kind="lsp", path="data/lsp", split="test", limit=test_limit, crop=crop))
    if name == "mpii":
        return (SourceConfig(kind="mpii", path="data/mpii", split="train", limit=train_limit),
                SourceConfig(kind="mpii", path="data/mpii", split="valid", limit=test_limit, crop=crop))
    raise ConfigError(f"unknown domain {name!r}; use one of {', '.join(DOMAINS[1:])}")


def resolve_domains(cfg: StudyConfig, root: Path) -> Domains:
    """MPII -> LSP as in the paper when the MPII images exist; otherwise (source=auto) LSPET -> LSP."""
    source = cfg.source
    if cfg.kind == "ablation" and source == "auto":
        source = "lspet"  # the ablation protocol holds out LSPET images; MPII is not one of its domains
    if source == "auto":
        source = "mpii" if mpii_images_present(root) else "lspet"
        logger.info("source domain: %s (MPII images %s under %s)", source,
                    "found" if source == "mpii" else "not found", root / "data/mpii/images")
    elif source == "mpii" and not mpii_images_present(root):
        raise FileNotFoundError(f"--source mpii needs the MPII images in {root / 'data/mpii/images'}; "
                                "use --source lspet (or auto) on a machine without them")
    if source == cfg.target:
        raise ConfigError(f"source and target must be different domains, both are {source!r}")
    s_train, s_test = _domain_sources(source, cfg, "source")
    t_train, t_test = _domain_sources(cfg.target, cfg, "target")
    if cfg.kind == "ablation":
        if cfg.target != "lsp" or source != "lspet":
            raise ConfigError(f"the ablation study runs on lspet + lsp, got {source} + {cfg.target}")
        # Validation from training data only: LSP train's last images are held out; LSP test is never read.
        t_train = dataclasses.replace(t_train, stop=-cfg.target_holdout)
        t_test = dataclasses.replace(t_test, split="train", start=-cfg.target_holdout)
    return Domains(source, cfg.target, s_train, s_test, t_train, t_test)


def domain_label(src: SourceConfig, entries: list[str] | None = None) -> str:
    """Human-readable data set, e.g. 'lspet im09501-im10000 (500 images)' from the records' entry names."""
    if entries:
        first, last = entries[0].split()[-1], entries[-1].split()[-1]
        label = f"{src.kind} {first}-{last}"
    else:
        label = f"{src.kind} {src.split}"
        if src.start is not None or src.stop is not None:
            label += f"[{'' if src.start is None else src.start}:{'' if src.stop is None else src.stop}]"
    if src.limit is not None:
        label += f", {src.limit} evenly spaced"
    return label


# ----------------------------------------------------------------------------------------------
# arms


def base_train_config(cfg: StudyConfig, domains: Domains) -> Config:
    """The arms' shared training config: the named YAML + overrides, with the study's evaluation settings."""
    path = Path(cfg.train_config)
    path = path if path.is_absolute() else REPO_ROOT / path
    train = load_config(path, cfg.train_set)
    # MPII-16 when MPII is one of the domains (LSP joints map into it), else the 14 LSP joints.
    train.model.joint_set = "mpii16" if "mpii" in (domains.source, domains.target) else "lsp14"
    train.eval.val_metric = cfg.primary_metric
    train.eval.flip_test = cfg.flip_test
    # val_limit 0 turns the per-epoch curve off.
    train.data.val = [] if cfg.val_limit == 0 else [dataclasses.replace(domains.target_test, limit=cfg.val_limit)]
    return train


def _ratio(src: SourceConfig, ratio: float, **changes) -> SourceConfig:
    return dataclasses.replace(src, ratio=ratio, **changes)


def _copy(cfg: Config) -> Config:
    return from_dict(Config, to_dict(cfg))


def _budgeted(train: Config, budget_images: int, epochs: int, seed: int) -> Config:
    """Same compute for every arm: ``budget_images`` images over ``epochs`` epochs of equal size."""
    batch = train.train.batch_size
    epoch_size = budget_images // epochs
    if epoch_size < batch:
        raise ConfigError(f"a budget of {budget_images} images over {epochs} epochs gives {epoch_size} images per "
                          f"epoch, less than one batch of {batch}; raise the budget or lower epochs")
    out = _copy(train)
    out.data.epoch_size = epoch_size
    out.train.epochs = epochs
    out.train.seed = seed
    return out


def lr_label(lr: float) -> str:
    """1e-4 -> '1e-04' (stable arm names)."""
    return f"{lr:.0e}"


def _fit_arm(cfg: StudyConfig, base: Config, seed: int, name: str, description: str,
             sources: list[SourceConfig], preset: str) -> ArmPlan:
    train = _budgeted(base, cfg.budget_images, cfg.epochs, seed)
    train.data.train = sources
    train.augment.preset = preset
    return ArmPlan(name, seed, name, description, train)


def _arms_for_seed(cfg: StudyConfig, domains: Domains, base: Config, seed: int) -> list[ArmPlan]:
    """The study's arms for one seed (run_id = arm name)."""
    source_only = [_ratio(domains.source_train, 1.0)]
    if cfg.kind == "augmentation":
        return [_fit_arm(cfg, base, seed, level, f"{domains.source} only, augmentation {level}", source_only, level)
                for level in cfg.augment_levels]
    if cfg.kind == "mixed":
        target_part = _ratio(domains.target_train, cfg.mix_target_ratio,
                             limit=min(cfg.mix_target_images, domains.target_train.limit or cfg.mix_target_images))
        mixed = [_ratio(domains.source_train, cfg.mix_source_ratio), target_part]
        share = cfg.mix_target_ratio / (cfg.mix_source_ratio + cfg.mix_target_ratio)
        return [_fit_arm(cfg, base, seed, MIXED_SOURCE_ARM, f"{domains.source} only", source_only, cfg.study_augment),
                _fit_arm(cfg, base, seed, MIXED_ARM, f"{domains.source} + {target_part.limit} {domains.target} train "
                         f"images ({100 * share:.1f}% of each epoch)", mixed, cfg.study_augment)]
    if cfg.kind == "ablation":
        return _ablation_arms(cfg, domains, base, seed)
    if cfg.base_checkpoint:
        arms = [ArmPlan(FINETUNE_BASE_ARM, seed, FINETUNE_BASE_ARM, f"given model {cfg.base_checkpoint}", _copy(base),
                        checkpoint=cfg.base_checkpoint)]
    else:
        arms = [_fit_arm(cfg, base, seed, FINETUNE_BASE_ARM, f"{domains.source} only (no transfer)", source_only,
                         cfg.study_augment)]
    for lr in cfg.finetune_lrs:
        name = f"ft_lr{lr_label(lr)}"
        train = _budgeted(base, cfg.finetune_budget_images, cfg.finetune_epochs, seed)
        train.data.train = [_ratio(domains.target_train, 1.0)]
        train.augment.preset = cfg.study_augment
        train.optim.lr = lr
        train.optim.lr_milestones = []  # a constant fine-tuning LR, as the paper's sweep
        arms.append(ArmPlan(name, seed, name, f"base fine-tuned on {domains.target} train at lr {lr:g}", train,
                            init_from=FINETUNE_BASE_ARM))
    return arms


def _ablation_arms(cfg: StudyConfig, domains: Domains, base: Config, seed: int) -> list[ArmPlan]:
    """The baseline recipe trained on both training sets (mixed at mix_source_ratio : mix_target_ratio), then
    one arm per ablation: the same plan with the arm's overrides on top (same budget, data and seed)."""
    sources = [_ratio(domains.source_train, cfg.mix_source_ratio), _ratio(domains.target_train, cfg.mix_target_ratio)]
    baseline = _fit_arm(cfg, base, seed, ABLATION_BASE_ARM, "the baseline recipe", sources, cfg.study_augment)
    arms = [baseline]
    for arm in cfg.ablation_arms:
        try:
            train = apply_overrides(baseline.train, arm.set)
        except ConfigError as exc:
            raise ConfigError(f"ablation arm {arm.name!r}: {exc}") from None
        if arm.evaluate_arm:
            decode = tuple(t for t in arm.set if t.split("=", 1)[0].strip() in EVALUATE_ONLY_KEYS)
            arms.append(ArmPlan(arm.name, seed, arm.name, arm.description or "; ".join(arm.set), train,
                                evaluate_from=arm.evaluate_arm, decode_set=decode))
            continue
        arms.append(ArmPlan(arm.name, seed, arm.name, arm.description or "; ".join(arm.set), train))
    return arms


def plan_arms(cfg: StudyConfig, domains: Domains) -> list[ArmPlan]:
    """Every (arm, seed) run of the study, base arms before the arms that start from them."""
    base = base_train_config(cfg, domains)
    plans: list[ArmPlan] = []
    for seed in cfg.seeds:
        for arm in _arms_for_seed(cfg, domains, base, seed):
            # Seed 0 keeps the plain arm name, so seeds added to a finished study reuse its arms.
            if seed != 0:
                arm = dataclasses.replace(arm, run_id=f"{arm.name}_seed{seed}",
                                          init_from=f"{arm.init_from}_seed{seed}" if arm.init_from else "")
            plans.append(arm)
    names = sorted({p.name for p in plans})
    if cfg.arms:
        unknown = [a for a in cfg.arms if a not in names]
        if unknown:
            raise ConfigError(f"arms {unknown} are not arms of the {cfg.kind} study; its arms are {names}")
        wanted = set(cfg.arms) | {baseline_name(cfg)}
        if cfg.kind == "finetune":
            wanted.add(FINETUNE_BASE_ARM)
        wanted |= {p.evaluate_from for p in plans if p.name in wanted and p.evaluate_from}
        plans = [p for p in plans if p.name in wanted]
    if baseline_name(cfg) not in names:
        raise ConfigError(f"baseline {baseline_name(cfg)!r} is not an arm of the {cfg.kind} study; arms: {names}")
    return plans


def baseline_name(cfg: StudyConfig) -> str:
    return cfg.baseline or DEFAULT_BASELINES[cfg.kind]


def study_root(cfg: StudyConfig) -> Path:
    """The shared data root the arms read (data.root of the training config after overrides)."""
    path = Path(cfg.train_config)
    train = load_config(path if path.is_absolute() else REPO_ROOT / path, cfg.train_set)
    return data_root(train)
