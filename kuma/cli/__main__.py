"""``python -m kuma.cli`` runs kumactl."""

from __future__ import annotations

import sys

from .main import main

sys.exit(main())
