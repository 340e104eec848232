"""`python -m scrapeq` is the `scrapeq` command."""

from __future__ import annotations

import sys

from scrapeq.cli import main

sys.exit(main())
