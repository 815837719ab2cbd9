"""Prometheus metrics (`[metrics] listen = "127.0.0.1:9469"`; off by default).

The exporter reads what the daemon already records for `tollwatch status` — its status rows,
the Slack outbox's health, the open incidents and the active blocks — at each scrape, so every
fact in the status (also ones added later) is exported without the daemon knowing about
Prometheus: each numeric field of the daemon's status becomes `tollwatch_daemon_<field>` (nested
ones `tollwatch_daemon_<field>_<key>`), each numeric field of a source's status
`tollwatch_source_<field>{source,kind}`. Named metrics on top:

- `tollwatch_up` 1 while the daemon reports (0: stopped or not reporting)
- `tollwatch_source_connected{source,kind}`, `tollwatch_source_events_per_second{source,kind}`
- `tollwatch_calls_in_progress{pbx}`, `tollwatch_calls_seen_total{pbx}` (since the daemon started)
- `tollwatch_incidents_open{severity}`
- `tollwatch_alerts{state}` (pending, sent, coalesced), `tollwatch_alert_failed_attempts_total`,
  `tollwatch_slack_ok` (0 while Slack refuses or is unreachable)
- `tollwatch_blocks_active` (held by AstDB), `tollwatch_blocks_not_applied` (recorded, not held),
  `tollwatch_blocks_dry_run` (what a dry run would block)
- a fleet daemon adds per-PBX series (`tollwatch_pbx_*{pbx}`, see tollwatch.fleet_metrics)
- `tollwatch_rows_read_total{source}`, `tollwatch_rows_skipped_total{source}` (CSV and database
  sources: rows read, rows that could not be used)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from tollwatch.alerting.textsafe import plain

log = logging.getLogger("tollwatch.metrics")

STALE_AFTER = 30.0
DEFAULT_PORT = 9469
_NAME = re.compile(r"[^a-zA-Z0-9_]")
_NAMED_SOURCE = {"connected", "events_per_s", "name", "kind", "calls_in_progress"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def _flat(prefix: str, data: dict[str, Any]) -> Iterator[tuple[str, float]]:
    for key, value in data.items():
        name = _NAME.sub("_", f"{prefix}_{key}")
        number = _number(value)
        if number is not None:
            yield name, number
        elif isinstance(value, dict):
            yield from _flat(name, value)


class StatusCollector(Collector):
    """Reads the daemon's data directory at each scrape."""

    def __init__(self, data_dir: Path, stale_after: float = STALE_AFTER) -> None:
        self.data_dir = Path(data_dir)
        self.stale_after = stale_after

    def collect(self) -> Iterator[Metric]:
        try:
            yield from self._collect()
        except Exception as exc:  # a scrape must not kill the exporter
            log.warning("metrics: cannot read the status (%s)", exc)

    def _collect(self) -> Iterator[Metric]:
        from tollwatch.status_read import read_daemon_status

        found = read_daemon_status(self.data_dir)
        incidents = found[3] if found else []
        yield from self._daemon((found[0], found[1]) if found else None)
        yield from self._sources(found[2] if found else [])
        open_by = GaugeMetricFamily("tollwatch_incidents_open", "Open incidents by severity",
                                    labels=["severity"])
        for severity in ("warning", "critical"):
            open_by.add_metric([severity], sum(1 for i in incidents
                                               if i.get("severity") == severity))
        yield open_by
        yield from self._alerts()
        yield from self._blocks()
        fleet = found[1].get("fleet") if found else None
        if isinstance(fleet, list):  # a fleet daemon: per-PBX series (label pbx)
            from tollwatch.fleet_metrics import fleet_metrics

            yield from fleet_metrics(self.data_dir, fleet)

    def _daemon(self, row: tuple[str, dict[str, Any]] | None) -> Iterator[Metric]:
        up = GaugeMetricFamily("tollwatch_up", "1 while the daemon runs and reports")
        if row is None:
            up.add_metric([], 0.0)
            yield up
            return
        updated, info = row
        try:
            age = (datetime.now(UTC) - datetime.fromisoformat(updated)).total_seconds()
        except (TypeError, ValueError):
            age = float("inf")
        up.add_metric([], 0.0 if info.get("stopped_at") or age > self.stale_after else 1.0)
        yield up
        calls = GaugeMetricFamily("tollwatch_calls_in_progress", "Calls up now, per PBX",
                                  labels=["pbx"])
        for pbx, n in sorted((info.get("calls_in_progress") or {}).items()):
            calls.add_metric([str(pbx)], float(n))
        yield calls
        seen = CounterMetricFamily("tollwatch_calls_seen", "Calls seen since start, per PBX",
                                   labels=["pbx"])
        for pbx, n in sorted((info.get("calls_seen") or {}).items()):
            seen.add_metric([str(pbx)], float(n))
        yield seen
        for name, value in _flat("tollwatch_daemon", {k: v for k, v in info.items()
                                                      if k not in ("calls_in_progress",
                                                                   "calls_seen")}):
            gauge = GaugeMetricFamily(name, f"Daemon status field {name[16:]}")
            gauge.add_metric([], value)
            yield gauge

    def _sources(self, sources: list[dict[str, Any]]) -> Iterator[Metric]:
        labels = ["source", "kind"]
        connected = GaugeMetricFamily("tollwatch_source_connected",
                                      "1 while the source (AMI, file, table) is connected",
                                      labels=labels)
        rate = GaugeMetricFamily("tollwatch_source_events_per_second",
                                 "Events per second over the last status interval", labels=labels)
        read = CounterMetricFamily("tollwatch_rows_read", "CDR rows read (file/table sources)",
                                   labels=["source"])
        skipped = CounterMetricFamily("tollwatch_rows_skipped",
                                      "CDR rows that could not be used (file/table sources)",
                                      labels=["source"])
        extra: dict[str, GaugeMetricFamily] = {}
        for data in sources:
            key = [str(data.get("name", "")), str(data.get("kind", ""))]
            connected.add_metric(key, 1.0 if data.get("connected") else 0.0)
            rate.add_metric(key, float(data.get("events_per_s") or 0.0))
            if data.get("kind") in ("csv", "db"):
                read.add_metric(key[:1], float(data.get("events") or 0))
                skipped.add_metric(key[:1], float(data.get("errors") or 0))
            for field, value in data.items():
                number = _number(value)
                if number is None or field in _NAMED_SOURCE:
                    continue
                name = _NAME.sub("_", f"tollwatch_source_{field}")
                gauge = extra.setdefault(name, GaugeMetricFamily(
                    name, f"Source status field {field}", labels=labels))
                gauge.add_metric(key, number)
        yield connected
        yield rate
        yield read
        yield skipped
        yield from extra.values()

    def _alerts(self) -> Iterator[Metric]:
        from tollwatch.alerting.outbox import read_health

        health = read_health(self.data_dir)
        if health is None:
            return
        alerts = GaugeMetricFamily("tollwatch_alerts", "Slack alerts in the outbox by state",
                                   labels=["state"])
        for state in ("pending", "sent", "coalesced"):
            alerts.add_metric([state], float(health.get(state, 0)))
        yield alerts
        failed = CounterMetricFamily("tollwatch_alert_failed_attempts",
                                     "Slack delivery attempts that failed")
        failed.add_metric([], float(health.get("failed_attempts", 0)))
        yield failed
        ok = GaugeMetricFamily("tollwatch_slack_ok", "1 while Slack accepts alerts")
        ok.add_metric([], 1.0 if health.get("state") == "ok" else 0.0)
        yield ok

    def _blocks(self) -> Iterator[Metric]:
        path = self.data_dir / "blocks.sqlite3"
        if not path.is_file():
            return
        from tollwatch.alerting.remediation.store import BlockStore

        store = BlockStore(path)
        try:
            real, not_applied, dry = store.counts()
        finally:
            store.close()
        gauge = GaugeMetricFamily("tollwatch_blocks_active", "Blocks in force in Asterisk")
        gauge.add_metric([], float(real))
        yield gauge
        pending = GaugeMetricFamily("tollwatch_blocks_not_applied",
                                    "Blocks recorded but not (yet) held by Asterisk's AstDB")
        pending.add_metric([], float(not_applied))
        yield pending
        would = GaugeMetricFamily("tollwatch_blocks_dry_run",
                                  "Blocks a dry run would have in force")
        would.add_metric([], float(dry))
        yield would


def parse_listen(listen: str) -> tuple[str, int]:
    """"127.0.0.1:9469" -> ("127.0.0.1", 9469); ":9469" -> ("0.0.0.0", 9469); "[::1]:9469"."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


def registry_for(data_dir: Path) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusCollector(data_dir))
    return registry


def start(listen: str, data_dir: Path) -> Any:
    """Serve /metrics on `listen` in a thread; returns (server, thread) to shut it down, or
    None when it cannot listen there (the port taken, an address not this host's): logged,
    and the daemon watches the PBXes without /metrics rather than not at all."""
    from prometheus_client import start_http_server

    host, port = parse_listen(listen)
    try:
        served = start_http_server(port, addr=host, registry=registry_for(data_dir))
    except (OSError, OverflowError) as exc:
        log.error("metrics: cannot listen on %s (%s); running without /metrics",
                  plain(listen), exc)
        return None
    log.info("metrics on http://%s:%d/metrics", host, port)
    return served
