"""Where things are in the repository, for tests that read its files (README, docs, examples)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
"""The repository's root folder."""
