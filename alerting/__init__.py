"""Alerters (Slack, console); arrives with the alerting issue."""
