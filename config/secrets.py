"""Read secrets from the environment or a file. Never from argv; never logged or shown.

An error names the setting (`secret_env`, `token_file`, ...), never what it holds: a user who
writes the secret itself where its variable name or file path belongs must not see it echoed in
a terminal, a log or a systemd journal.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SecretError(Exception):
    """A secret could not be read. The message names the setting, never its value."""


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
        value = os.environ.get(env)
        if not value:
            raise SecretError(
                f"{what}: the environment variable named by {env_key} is not set or empty "
                f"(its name is not shown, in case it is the secret)"
            )
        return value
    if file is not None:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SecretError(
                f"{what}: cannot read the file named by {file_key} ({exc.strerror or 'error'};"
                f" its path is not shown, in case it is the secret)"
            ) from None
        except UnicodeDecodeError:
            raise SecretError(f"{what}: the file named by {file_key} is not UTF-8 text") from None
        if not value:
            raise SecretError(f"{what}: the file named by {file_key} is empty")
        return value
    raise SecretError(f"{what}: neither {env_key} nor {file_key} is configured")
