"""Secrets out of step output, as CircleCI masks project variables.

CircleCI replaces the value of every project variable (and context variable) of four
characters or more with ``********`` wherever it appears in a step's output.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "********"
MIN_SECRET_LENGTH = 4


class Masker:
    """Replaces secret values in text; longest first so a secret's prefix cannot leak."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = sorted(
            {s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True
        )
        self._pattern = re.compile("|".join(re.escape(v) for v in values)) if values else None
        self.longest = len(values[0]) if values else 0

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)
