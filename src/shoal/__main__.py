"""`python -m shoal` runs the CLI."""

from shoal.cli import main

if __name__ == "__main__":  # a spawned child process imports this module again, as `__mp_main__`
    main()
