"""`python -m kinetics_prep` is the `kinetics-prep` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
