"""``python -m glimpse`` — the same as the ``glimpse`` command."""

from glimpse.cli import main

main()
