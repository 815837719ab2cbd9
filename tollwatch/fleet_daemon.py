"""`tollwatch run` with a fleet file: one pipeline per `[[pbx]]`, all in one process.

As in CrowdSec, sources, detection, decision and enforcement stay apart per PBX: each PBX is a
`PbxPipeline` (tollwatch.fleet_pipeline) built from its own resolved settings, and the
`FleetSupervisor` here owns many of them. It starts them, writes the fleet's status (one line
per PBX) to `<data_dir>/status.json` for `tollwatch status` and the metrics exporter (label
`pbx`), talks to systemd, and on SIGHUP re-reads the file: PBXes added start, removed ones stop
(state saved), those whose effective settings changed restart, the rest run on untouched. A file
that no longer loads, or a PBX whose new settings are invalid, is logged and what runs is kept.

A single-site settings file never comes here: `tollwatch run` keeps running it as one daemon.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tollwatch.config import ConfigError
from tollwatch.config.fleet import Fleet
from tollwatch.config.sqlite import HEALTH
from tollwatch.fleet_pipeline import PbxPipeline, fingerprint, live_settings
from tollwatch.notify import Notifier
from tollwatch.state import StatusFile

log = logging.getLogger("tollwatch.fleet")

Loader = Callable[[], Fleet]


class FleetSupervisor:
    """Many PBX pipelines in one asyncio loop. `load()` resolves the fleet file (again on
    reload); `data_dir` and the status interval are the shared `[daemon]` settings at start."""

    def __init__(self, load: Loader, data_dir: Path, status_every: float = 5.0) -> None:
        self.load = load
        self.data_dir = Path(data_dir)
        self.status_every = status_every
        self.pipelines: dict[str, PbxPipeline] = {}
        self.invalid: dict[str, list[str]] = {}  # PBXes whose settings do not resolve
        self.order: list[str] = []
        self.notifier = Notifier()
        self.status_file = StatusFile(self.data_dir)
        self.started_at = datetime.now(UTC)
        self.reloads = 0
        self._lock = asyncio.Lock()

    # ---- pipelines -------------------------------------------------------------------------
    async def apply(self, fleet: Fleet) -> dict[str, list[str]]:
        """Make the running pipelines match `fleet`; returns what was done (for the log)."""
        async with self._lock:
            done: dict[str, list[str]] = {"started": [], "stopped": [], "restarted": [],
                                          "kept": []}
            wanted = {name: live_settings(name, s, self.data_dir)
                      for name, s in fleet.settings.items()}
            for name, errors in fleet.errors.items():
                for error in errors:
                    log.error("pbx %s: settings: %s%s", name, error,
                              "; it keeps running as it was" if name in self.pipelines else "")
            self.invalid = dict(fleet.errors)
            gone = [n for n in self.pipelines if n not in wanted and n not in fleet.errors]
            changed = [n for n, s in wanted.items()
                       if n in self.pipelines and self.pipelines[n].key != fingerprint(s)]
            await asyncio.gather(*(self.pipelines[n].close() for n in gone + changed))
            for name in gone:
                del self.pipelines[name]
                done["stopped"].append(name)
            for name, settings in wanted.items():
                old = self.pipelines.get(name)
                if old is not None and name not in changed:
                    done["kept"].append(name)
                    continue
                pipeline = PbxPipeline(name, settings)
                self.pipelines[name] = pipeline
                pipeline.start()
                done["restarted" if name in changed else "started"].append(name)
            self.order = [n for n in fleet.order if n in self.pipelines or n in self.invalid]
            return done

    def reload(self) -> asyncio.Task[None]:
        """SIGHUP: re-read the fleet file and apply it (in a task: signal handlers are sync)."""
        return asyncio.create_task(self._reload(), name="fleet-reload")

    async def _reload(self) -> None:
        self.reloads += 1
        try:
            fleet = await asyncio.to_thread(self.load)
        except ConfigError as exc:
            for error in exc.errors:
                log.error("SIGHUP: %s: %s; the running PBXes are kept", exc.source or "settings",
                          error)
            return
        except Exception as exc:  # a reload must never take the running PBXes down
            log.error("SIGHUP: cannot load the fleet file (%s); the running PBXes are kept", exc)
            return
        done = await self.apply(fleet)
        for name in done["kept"]:
            self.pipelines[name].resume_alerts()
        log.info("SIGHUP: fleet reloaded: %s", "; ".join(
            f"{what} {', '.join(names)}" for what, names in done.items() if names) or "no PBX")

    async def close(self) -> None:
        async with self._lock:
            await asyncio.gather(*(p.close() for p in self.pipelines.values()))

    # ---- status ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """status.json: the fleet's totals (the single daemon's keys) and one line per PBX."""
        now = datetime.now(UTC)
        lines: list[dict[str, Any]] = []
        sources: list[dict[str, Any]] = []
        for name in self.order:
            if name in self.invalid and name not in self.pipelines:
                lines.append({"pbx": name, "state": "invalid settings", "connected": False,
                              "connection": self.invalid[name][0], "errors": 1})
                continue
            row = self.pipelines[name].line(now)
            for st in row.pop("sources", []):
                data = asdict(st)
                data["last_event_at"] = st.last_event_at.isoformat() if st.last_event_at else None
                sources.append({**data, "pbx": name})
            lines.append(row)
        backlogs = [r["backlog"] for r in lines if r.get("backlog")]
        stalled = [f"pbx {r['pbx']}: {r['stalled']}" for r in lines if r.get("stalled")]
        daemon = {
            "started_at": self.started_at.isoformat(),
            "site": f"fleet of {len(lines)} PBX",
            "events": sum(r.get("events", 0) for r in lines),
            "errors": sum(r.get("errors", 0) for r in lines),
            "open_incidents": sum(r.get("open_incidents", 0) for r in lines),
            "calls_in_progress": {r["pbx"]: r.get("calls_in_progress", 0) for r in lines},
            "backlog": {
                "events": sum(b["events"] for b in backlogs),
                "oldest_s": max((b["oldest_s"] for b in backlogs), default=0.0),
                "peak": max((b["peak"] for b in backlogs), default=0),
                "limit": max((b["limit"] for b in backlogs), default=0),
            },
            "storage": HEALTH.problems(),
            "storage_failures": HEALTH.failures_total,
            "stalled": "; ".join(stalled),
            "pbx_connected": sum(1 for r in lines if r.get("connected")),
            "pbx_total": len(lines),
            "reloads": self.reloads,
            "fleet": lines,
        }
        return {"updated_at": now.isoformat(), "daemon": daemon, "sources": sources}

    def health_line(self, doc: dict[str, Any]) -> str:
        d = doc["daemon"]
        parts = [f"{d['pbx_connected']}/{d['pbx_total']} PBX connected", f"{d['events']} events",
                 f"{d['open_incidents']} open incidents"]
        if d["stalled"]:
            parts.append(f"STALLED: {d['stalled']}")
        return "; ".join(parts)

    async def _reporter(self) -> None:
        every = self.notifier.watchdog or self.status_every
        since = 0.0
        while True:
            doc = self.status()
            line = self.health_line(doc)
            if since <= 0:
                self.status_file.write(doc)
                since = self.status_every
            if doc["daemon"]["stalled"] or self.notifier.watchdog is None:
                self.notifier.status(line)
            else:
                self.notifier.alive(line)
            step = min(every, self.status_every)
            await asyncio.sleep(step)
            since -= step

    async def run(self, stop: asyncio.Event, fleet: Fleet) -> None:
        await self.apply(fleet)
        log.info("tollwatch fleet running: %d PBX", len(self.pipelines))
        self.notifier.ready(self.health_line(self.status()))
        reporter = asyncio.create_task(self._reporter(), name="fleet-status")
        try:
            await stop.wait()
        finally:
            self.notifier.stopping()
            reporter.cancel()
            await asyncio.gather(reporter, return_exceptions=True)
            began = time.monotonic()
            await self.close()
            doc = self.status()
            doc["daemon"]["stopped_at"] = datetime.now(UTC).isoformat()
            self.status_file.write(doc)
            self.notifier.close()
            log.info("tollwatch fleet stopped in %.1fs; state saved", time.monotonic() - began)


def shared_daemon(fleet: Fleet) -> tuple[Path, float]:
    """The fleet's data directory and status interval (the shared [daemon] table)."""
    any_pbx = next(iter(fleet.settings.values()), None)
    if any_pbx is None:
        raise ConfigError([f"pbx[{n}]: {e}" for n, errs in fleet.errors.items() for e in errs],
                          fleet.source)
    return Path(any_pbx.daemon.data_dir), any_pbx.daemon.status_every.total_seconds()


async def run_fleet(load: Loader, stop: asyncio.Event | None = None) -> None:
    """`tollwatch run` for a fleet file: SIGTERM/SIGINT stop, SIGHUP reloads."""
    fleet = load()
    data_dir, status_every = shared_daemon(fleet)
    data_dir.mkdir(parents=True, exist_ok=True)
    supervisor = FleetSupervisor(load, data_dir, status_every)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, supervisor.reload)
    served = None
    metrics = fleet.shared.get("metrics") or {}
    if metrics.get("listen"):
        from tollwatch import metrics as exporter

        served = exporter.start(str(metrics["listen"]), data_dir)
    try:
        await supervisor.run(stop, fleet)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        if served is not None:
            served[0].shutdown()
            served[0].server_close()
