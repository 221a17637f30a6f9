"""`python -m mailer` runs the command line."""

from __future__ import annotations

from mailer.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
