"""What `rehab --help`, `rehab process --help` and `rehab exercises` show a new user (Typer's CliRunner)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from rehab.analysis.exercises import EXERCISES, describe_repetition, get_exercise
from rehab.cli import app

runner = CliRunner()
COMMANDS = ("app", "evaluate", "process", "exercises")
# Typer's own type labels, e.g. <bool>, <path>, <list[Path]>, <int range>.
TYPE_LABEL = re.compile(r"<(bool|path|str|int|float|list)[^>]*>", re.IGNORECASE)


def _help(*args: str) -> str:
    run = runner.invoke(app, [*args, "--help"], env={"COLUMNS": "80"})
    assert run.exit_code == 0, run.output
    return run.output


def test_top_level_help_names_the_extra_that_train_and_export_need():
    text = _help()
    for command in ("train", "export"):
        [line] = [row for row in text.splitlines() if row.strip().startswith(command + " ")]
        assert "(needs the [train] extra)" in line, line
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\s+\S", text, re.MULTILINE), f"{command} is listed with its help"


@pytest.mark.parametrize("command", [(), *((c,) for c in COMMANDS)])
def test_no_type_labels_in_any_help(command):
    text = _help(*command)
    assert not TYPE_LABEL.search(text), TYPE_LABEL.search(text).group(0)


def test_process_help_says_what_each_option_takes_and_lists_the_exercises():
    text = _help("process")
    for shown in ("-o, --out DIR", "-e, --exercise NAME", "-w, --workers N", "--max-seconds SECONDS", "PATH"):
        assert shown in text, shown
    flat = " ".join(text.split())
    assert ", ".join(EXERCISES) in flat


def test_exercises_say_what_the_patient_does_reversed_movements_too():
    run = runner.invoke(app, ["exercises"])
    assert run.exit_code == 0, run.output
    flat = " ".join(run.output.split())
    assert ("at rest the knees are bent less than 30 deg; a repetition bends them past 60 deg and straightens "
            "them back to less than 30 deg, in at least 1 s") in flat
    # Sit to stand is the reverse (active at low angles): seated is rest, standing up straightens the knees.
    assert ("at rest the knees are bent more than 60 deg; a repetition straightens them to less than 30 deg "
            "and bends them back past 60 deg, in at least 0.8 s") in flat
    for exercise in EXERCISES.values():
        assert describe_repetition(exercise) in flat


def test_repetition_words_follow_the_thresholds_a_therapist_sets():
    gentle = get_exercise("elbow_curl").with_thresholds(enter_deg=70, exit_deg=30, min_duration_s=1.0)
    assert describe_repetition(gentle) == ("at rest the elbow is bent less than 30 deg; a repetition bends it past "
                                           "70 deg and straightens it back to less than 30 deg, in at least 1 s")
    assert "the arms are raised less than 30 deg" in describe_repetition(get_exercise("lateral_raise"))


TORCH_COMMANDS = [("train",), ("train", "fit"), ("train", "finetune"), ("train", "evaluate"), ("train", "plots"),
                  ("train", "study"), ("train", "study-summary"), ("export",)]


@pytest.mark.parametrize("command", [("users", "add"), ("users", "list"), *TORCH_COMMANDS], ids=" ".join)
def test_train_export_and_users_help_is_plain_too(command):
    if command[0] in ("train", "export"):
        pytest.importorskip("torch")
    # The forwarded commands parse their own --help; their Typer prints it and exits 0.
    run = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"})
    assert run.exit_code == 0, run.output
    assert "Usage: " in run.output and "Options:" in run.output
    assert not TYPE_LABEL.search(run.output), TYPE_LABEL.search(run.output).group(0)
    assert "╭" not in run.output, "Rich panels"
