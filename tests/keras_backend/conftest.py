"""Lets the per-backend tests import their reference module."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
