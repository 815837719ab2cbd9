"""Alerters: where incident changes go (console/log now; Slack with the alerting issue)."""

from alerting.base import Alerter, IncidentView
from alerting.console import ConsoleAlerter

__all__ = ["Alerter", "ConsoleAlerter", "IncidentView"]
