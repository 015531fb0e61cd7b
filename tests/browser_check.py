"""Whether the headless browser the page tests drive is here: Debian's chromium, node and
playwright-core (``npm ci --prefix tests/browser``; .ci/run installs both)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

BROWSER_DIR = Path(__file__).resolve().parent / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists():
        return f"chromium not found at {CHROMIUM} (apt-get install chromium)"
    if shutil.which("node") is None:
        return "node not found"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return "playwright-core not installed (npm ci --prefix tests/browser)"
    return None
