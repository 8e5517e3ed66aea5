"""Where the sandbox keeps its cache (base images) and its state (one running fleet)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE_ENV = "MAILMEND_CACHE"
STATE_ENV = "MAILMEND_SANDBOX"


def cache_dir() -> Path:
    """Base images and their archives: reused across sandboxes and test runs."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "mailmend"


def default_state_dir() -> Path:
    """The running sandbox fleet: ``$MAILMEND_SANDBOX`` or ``.sandbox/`` in the repository."""
    env = os.environ.get(STATE_ENV)
    return Path(env) if env else REPO / ".sandbox"
