"""`python -m shoal` runs the CLI."""

from shoal.cli import main

main()
