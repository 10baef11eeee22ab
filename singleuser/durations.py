"""Durations as people type them on a command line: `3600`, `90s`, `30m`, `12h`, `2d`, `1w`.

One spelling for every tool of the user's server (datalakectl's lifetimes and timeouts, dlaas-scratch-cleanup's
--max-age): a positive whole number, optionally followed by one unit letter.
"""

from __future__ import annotations

import re

_DURATION = re.compile(r"(\d+)([smhdw]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
EXAMPLES = "3600, 30m, 12h or 2d"


def parse_duration(text: str) -> int:
    """The number of seconds `text` names; ValueError (one line, with examples) unless it is a positive duration."""
    match = _DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise ValueError(f"{text!r}: use a positive duration such as {EXAMPLES}")
    return int(match.group(1)) * UNITS[match.group(2)]
