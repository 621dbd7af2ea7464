"""`python -m rnnlab ...` is the same as the `rnnlab` command."""

from rnnlab.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
