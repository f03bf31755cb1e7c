"""``python -m train ...``: the same Typer app that ``rehab train`` mounts."""

from train.cli import app

if __name__ == "__main__":
    app()
