"""The shipped rule types. Importing this package registers them."""

from tollwatch.rules.builtin import (
    auth_failures,
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
    "auth_failures",
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
