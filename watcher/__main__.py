"""``python -m watcher`` runs the command line."""

from .cli import main

main()
