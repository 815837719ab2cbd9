"""Read secrets from the environment or a file. Never from argv; never logged or shown.

A relative `*_file` is looked up in systemd's credentials directory (`$CREDENTIALS_DIRECTORY`,
set by `LoadCredential=NAME:/path` in the unit) when there is one: `secret_file = "ami-secret"`
with `LoadCredential=ami-secret:/etc/tollwatch/ami.secret`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"


class SecretError(Exception):
    """A secret could not be read. The message names where it was looked for, never a value."""


def secret_path(file: Path | str) -> Path:
    """Where a configured secret file is: relative names in $CREDENTIALS_DIRECTORY if set."""
    path = Path(file)
    creds = os.environ.get(CREDENTIALS_ENV)
    if creds and not path.is_absolute():
        return Path(creds) / path
    return path


def read_secret(env: str | None, file: Path | None, what: str) -> str:
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise SecretError(f"{what}: environment variable {env} is not set")
        return value
    if file is not None:
        path = secret_path(file)
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(f"{what}: cannot read {path} ({exc.strerror})") from None
        if not value:
            raise SecretError(f"{what}: {path} is empty")
        return value
    raise SecretError(f"{what}: no secret_env or secret_file configured")


def _check(where: str, key: str, value: Any) -> str | None:
    if not isinstance(value, str | Path) or not str(value):
        return None
    if key.endswith("_env"):
        if not os.environ.get(str(value)):
            return f"{where}.{key}: environment variable {value} is not set (or empty)"
        return None
    path = secret_path(value)
    try:
        if not path.read_text(encoding="utf-8").strip():
            return f"{where}.{key}: {path} is empty"
    except OSError as exc:
        return f"{where}.{key}: cannot read {path} ({exc.strerror})"
    return None


def missing_secrets(data: Mapping[str, Any]) -> list[str]:
    """For check-config: every referenced secret (env var or file) that cannot be read, named
    by its setting. Works on the merged settings data, valid or not; never shows a value."""
    found: list[str] = []
    ami = data.get("ami")
    for i, server in enumerate(ami if isinstance(ami, list) else []):
        if isinstance(server, Mapping):
            for key in ("secret_env", "secret_file"):
                line = _check(f"ami[{i}]", key, server.get(key))
                if line:
                    found.append(line)
    slack = data.get("slack")
    if isinstance(slack, Mapping) and slack.get("enabled"):
        for key in ("token_env", "token_file", "webhook_env", "webhook_file"):
            line = _check("slack", key, slack.get(key))
            if line:
                found.append(line)
    return found
