"""Entry point of `python -m review_reminders`, the operator command line (see cli.py)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
