"""Prometheus metrics of a fleet daemon, one series per PBX (label `pbx`).

Read from the fleet's status.json lines (`tollwatch.fleet_daemon`) and each PBX's own Slack
outbox (`<data_dir>/pbx/<name>/`), at each scrape like the rest of `tollwatch.metrics`:

- `tollwatch_pbx_connected{pbx}` 1 while all the PBX's sources are connected
- `tollwatch_pbx_incidents_open{pbx}`, `tollwatch_pbx_blocks_active{pbx}`,
  `tollwatch_pbx_blocks_dry_run{pbx}`
- `tollwatch_pbx_events_total{pbx}`, `tollwatch_pbx_errors_total{pbx}`,
  `tollwatch_pbx_restarts_total{pbx}` (pipeline restarted after a failure)
- `tollwatch_pbx_last_event_age_seconds{pbx}` (absent until a first event)
- `tollwatch_pbx_alerts{pbx,state}` (pending, sent, coalesced), `tollwatch_pbx_slack_ok{pbx}`

`tollwatch_calls_in_progress{pbx}` comes from the daemon's totals, as for a single site.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

_GAUGES = (
    ("connected", "tollwatch_pbx_connected", "1 while every source of the PBX is connected"),
    ("open_incidents", "tollwatch_pbx_incidents_open", "Open incidents of the PBX"),
    ("blocks", "tollwatch_pbx_blocks_active", "Blocks in force in the PBX"),
    ("blocks_dry_run", "tollwatch_pbx_blocks_dry_run", "Blocks a dry run would have in force"),
    ("last_event_age_s", "tollwatch_pbx_last_event_age_seconds",
     "Seconds since the PBX's last event"),
)
_COUNTERS = (
    ("events", "tollwatch_pbx_events", "Events handled for the PBX"),
    ("errors", "tollwatch_pbx_errors", "Errors of the PBX (sources, events, pipeline)"),
    ("restarts", "tollwatch_pbx_restarts", "Times the PBX's pipeline was started again"),
)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    return float(value) if isinstance(value, int | float) else None


def fleet_metrics(data_dir: Path, lines: list[Any]) -> Iterator[Metric]:
    rows = [r for r in lines if isinstance(r, dict) and r.get("pbx")]
    for key, name, text in _GAUGES:
        gauge = GaugeMetricFamily(name, text, labels=["pbx"])
        for row in rows:
            value = _number(row.get(key, 0))
            if value is not None:
                gauge.add_metric([str(row["pbx"])], value)
        yield gauge
    for key, name, text in _COUNTERS:
        counter = CounterMetricFamily(name, text, labels=["pbx"])
        for row in rows:
            counter.add_metric([str(row["pbx"])], _number(row.get(key, 0)) or 0.0)
        yield counter
    yield from _alerts(data_dir, rows)


def _alerts(data_dir: Path, rows: list[dict[str, Any]]) -> Iterator[Metric]:
    from tollwatch.alerting.outbox import read_health
    from tollwatch.fleet_pipeline import pbx_dir

    alerts = GaugeMetricFamily("tollwatch_pbx_alerts", "Slack alerts in the PBX's outbox",
                               labels=["pbx", "state"])
    ok = GaugeMetricFamily("tollwatch_pbx_slack_ok", "1 while Slack accepts the PBX's alerts",
                           labels=["pbx"])
    for row in rows:
        name = str(row["pbx"])
        health = read_health(pbx_dir(data_dir, name))
        if health is None:
            continue
        for state in ("pending", "sent", "coalesced"):
            alerts.add_metric([name, state], float(health.get(state, 0)))
        ok.add_metric([name], 1.0 if health.get("state") == "ok" else 0.0)
    yield alerts
    yield ok
