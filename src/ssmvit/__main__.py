"""``python -m ssmvit ...`` is the ``ssmvit`` command (for a box where the package is on PYTHONPATH only)."""
from .cli import main

main()
