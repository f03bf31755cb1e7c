"""`python -m export CHECKPOINT ...`: the same command as `rehab export`."""

from export.cli import app

app(prog_name="python -m export")
