"""``python -m operando`` is the ``operando`` command."""

from operando.cli import main

main()
