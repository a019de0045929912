"""``python -m resp_sep`` runs the command line."""

from resp_sep.cli import run

run()
