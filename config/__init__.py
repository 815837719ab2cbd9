"""Settings: schema, shipped defaults, loading and validation."""

from tollwatch.config.load import ConfigError, load_settings, masked_dump
from tollwatch.config.schema import Settings

__all__ = ["ConfigError", "Settings", "load_settings", "masked_dump"]
