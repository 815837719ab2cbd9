"""Read secrets from the environment or a file. Never from argv; never logged or shown.

An error names the setting (`secret_env`, `token_file`, ...), never what it holds: a user who
writes the secret itself where its variable name or file path belongs must not see it echoed in
a terminal, a log or a systemd journal.

A relative `*_file` is looked up in systemd's credentials directory (`$CREDENTIALS_DIRECTORY`,
set by `LoadCredential=NAME:/path` in the unit) when there is one: `secret_file = "ami-secret"`
with `LoadCredential=ami-secret:/etc/tollwatch/ami.secret`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tollwatch.config.types import one_line

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SecretError(Exception):
    """A secret could not be read. The message names the setting, never its value."""


def secret_path(file: Path | str) -> Path:
    """Where a configured secret file is: relative names in $CREDENTIALS_DIRECTORY if set."""
    path = Path(file)
    creds = os.environ.get(CREDENTIALS_ENV)
    if creds and not path.is_absolute():
        return Path(creds) / path
    return path


def read_secret(
    env: str | None,
    file: Path | None,
    what: str,
    env_key: str = "secret_env",
    file_key: str = "secret_file",
) -> str:
    """The secret from the environment variable named by `env`, else from the file `file`.

    `what` says whose secret it is (e.g. "ami.0.secret"); `env_key`/`file_key` are the names of
    the settings that hold `env`/`file`, used in errors instead of their values."""
    if env is not None:
        if not _ENV_NAME.fullmatch(env):
            raise SecretError(
                f"{what}: {env_key} is not an environment variable name (did you write the "
                f"secret itself there? put the secret in the environment and its name in "
                f"{env_key}; the value is not shown)"
            )
        value = (os.environ.get(env) or "").strip()
        if not value:
            raise SecretError(
                f"{what}: the environment variable named by {env_key} is not set or empty "
                f"(its name is not shown, in case it is the secret)"
            )
        return _one_line(value, what)
    if file is not None:
        try:
            value = secret_path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(
                f"{what}: cannot read the file named by {file_key} ({exc.strerror or 'error'};"
                f" its path is not shown, in case it is the secret)"
            ) from None
        except UnicodeDecodeError:
            raise SecretError(f"{what}: the file named by {file_key} is not UTF-8 text") from None
        if not value:
            raise SecretError(f"{what}: the file named by {file_key} is empty")
        return _one_line(value, what)
    raise SecretError(f"{what}: neither {env_key} nor {file_key} is configured")


def _one_line(value: str, what: str) -> str:
    """A secret goes into an AMI header or an HTTP request as it is: a line end inside it
    would end that header and start another (spaces around it are trimmed)."""
    if not one_line(value):
        raise SecretError(f"{what}: the secret holds a line end or another control character "
                          "(it would break the request it goes into; the value is not shown)")
    return value


def _problem(where: str, key: str, value: Any) -> str | None:
    if not isinstance(value, str | Path) or not str(value):
        return None
    env = str(value) if key.endswith("_env") else None
    file = None if env is not None else Path(value)
    try:
        read_secret(env, file, where, key, key)
    except SecretError as exc:
        return str(exc)
    return None


def missing_secrets(data: Mapping[str, Any]) -> list[str]:
    """For check-config: every referenced secret (env var or file) that cannot be read, named
    by its setting. Works on the merged settings data, valid or not; never shows a value."""
    found: list[str] = []
    ami = data.get("ami")
    for i, server in enumerate(ami if isinstance(ami, list) else []):
        if isinstance(server, Mapping):
            for key in ("secret_env", "secret_file"):
                line = _problem(f"ami[{i}].{key}", key, server.get(key))
                if line:
                    found.append(line)
    slack = data.get("slack")
    if isinstance(slack, Mapping) and slack.get("enabled"):
        for key in ("token_env", "token_file", "webhook_env", "webhook_file"):
            line = _problem(f"slack.{key}", key, slack.get(key))
            if line:
                found.append(line)
    return found
