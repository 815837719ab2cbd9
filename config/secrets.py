"""Read secrets from the environment or a file. Never from argv; never logged or shown."""

from __future__ import annotations

import os
from pathlib import Path


class SecretError(Exception):
    """A secret could not be read. The message names where it was looked for, never a value."""


def read_secret(env: str | None, file: Path | None, what: str) -> str:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise SecretError(f"{what}: environment variable {env} is not set")
        return value
    if file is not None:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"{what}: cannot read {file} ({exc.strerror})") from None
        if not value:
            raise SecretError(f"{what}: {file} is empty")
        return value
    raise SecretError(f"{what}: no secret_env or secret_file configured")
