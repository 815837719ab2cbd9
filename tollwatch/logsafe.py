"""Log lines that an attacker cannot forge or use to drive a terminal.

`PlainMessages` is a logging filter for handlers: the formatted message (with its arguments,
which may hold caller IDs, numbers, channel names or file names from a CDR or AMI) goes through
`alerting.textsafe.plain`, so ESC sequences and line breaks show as `\\xNN` and one record stays
one line. Tracebacks are left as they are (they come from our code, not from input).
"""

from __future__ import annotations

import logging

from tollwatch.alerting.textsafe import plain


class PlainMessages(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: let logging report it as usual
            return True
        safe = plain(message)
        if safe != message or record.args:
            record.msg, record.args = safe, None
        return True


def install(logger: logging.Logger | None = None) -> None:
    """Add the filter to every handler of `logger` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, PlainMessages) for f in handler.filters):
            handler.addFilter(PlainMessages())
