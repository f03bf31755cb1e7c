"""The README's two set-up commands are the ones the project really runs."""

from __future__ import annotations

import re

from tests.conftest import REPO_ROOT


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command_verbatim():
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    blocks = _bash_blocks(readme)
    test_commands = [b for b in blocks if "pytest" in b]
    assert len(test_commands) == 1, "README must show exactly one test command"
    assert test_commands[0] in ci
    assert "REHAB_REQUIRE_DATA=1" in ci


def test_readme_main_command_uses_a_real_cli_command():
    from typer.main import get_command

    from rehab.cli import app

    readme = (REPO_ROOT / "README.md").read_text()
    main = _bash_blocks(readme)[0]
    match = re.search(r"\.venv/bin/rehab (\w+)", main)
    assert match, main
    assert match.group(1) in get_command(app).commands
