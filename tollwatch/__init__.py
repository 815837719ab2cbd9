"""tollwatch: PBX toll-fraud monitor for Asterisk (CLI and daemon wiring)."""

__version__ = "0.1.0"
