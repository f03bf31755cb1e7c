"""The paper's three studies (augmentation level, mixed-domain training, fine-tuning LR sweep) as sets of
ordinary training runs with one budget and seed policy, evaluated on source and target test sets, with
bootstrap intervals and paired tests in a JSON + markdown + PNG report. See docs/studies/README.md."""

from train.studies.config import (
           STUDY_KINDS,
           ArmPlan,
           StudyConfig,
           load_study_config,
           plan_arms,
)
from train.studies.study import (
           StudyResult,
           parse_reuse,
           run_study,
           study_config_from_cli,
)

__all__ = ["STUDY_KINDS", "ArmPlan", "StudyConfig", "StudyResult", "load_study_config", "parse_reuse", "plan_arms",
           "run_study", "study_config_from_cli"]
