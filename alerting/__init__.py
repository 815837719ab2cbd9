"""Alerters: where incident changes go (console/log, Slack) and remediation (blocks)."""

from tollwatch.alerting.base import Alerter, IncidentView
from tollwatch.alerting.console import ConsoleAlerter

__all__ = ["Alerter", "ConsoleAlerter", "IncidentView"]
