"""``python -m visent`` runs the command line."""

from visent.cli import app

app()
