"""The shipped rule types. Importing this package registers them."""

from rules.builtin import (
    burst,
    concurrent,
    high_risk,
    long_call,
    new_destination,
    off_hours,
    sequential,
    short_calls,
    spend,
)

__all__ = [
    "burst",
    "concurrent",
    "high_risk",
    "long_call",
    "new_destination",
    "off_hours",
    "sequential",
    "short_calls",
    "spend",
]
