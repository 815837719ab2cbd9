"""Alerters: where incident changes go (console/log, Slack) and remediation (blocks)."""

from alerting.base import Alerter, IncidentView
from alerting.console import ConsoleAlerter

__all__ = ["Alerter", "ConsoleAlerter", "IncidentView"]
