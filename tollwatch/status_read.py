"""The daemon's last status, as `tollwatch status` and the metrics exporter read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Found = tuple[str, dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]


def read_daemon_status(directory: Path) -> Found | None:
    """(updated_at, daemon info, sources, open incidents) from the daemon's status.json
    (written in place: current even on a full disk) or its state database; None: no daemon
    ever reported here."""
    from tollwatch.state import StateStore, read_status_file

    db = directory / "tollwatch.sqlite3"
    doc = read_status_file(directory)
    incidents: list[dict[str, Any]] = []
    rows: dict[str, tuple[str, dict[str, Any]]] = {}
    if db.is_file():
        store = StateStore(db)
        try:
            rows = store.read_status()
            incidents = store.incidents(open_only=True)
        finally:
            store.close()
    if doc is not None:
        info = dict(doc.get("daemon") or {})
        if isinstance(info.get("fleet"), list):  # a fleet daemon: each PBX's own state
            incidents = fleet_incidents(directory, info["fleet"])
        if "stopped_at" in (rows.get("daemon") or ("", {}))[1]:
            info.setdefault("stopped_at", rows["daemon"][1]["stopped_at"])
        return (str(doc.get("updated_at")), info, [dict(d) for d in doc.get("sources") or []],
                incidents)
    daemon = rows.get("daemon")
    if daemon is None:
        return None
    sources = [data for name, (_, data) in sorted(rows.items()) if name.startswith("source:")]
    return daemon[0], daemon[1], sources, incidents


def fleet_incidents(directory: Path, lines: list[Any]) -> list[dict[str, Any]]:
    """The open incidents of every PBX of a fleet daemon (`<data_dir>/pbx/<name>/`)."""
    from tollwatch.fleet_pipeline import pbx_dir
    from tollwatch.state import StateStore

    found: list[dict[str, Any]] = []
    for line in lines:
        name = str(line.get("pbx", "")) if isinstance(line, dict) else ""
        db = pbx_dir(directory, name) / "tollwatch.sqlite3"
        if not name or not db.is_file():
            continue
        store = StateStore(db)
        try:
            found += [{**inc, "pbx": name} for inc in store.incidents(open_only=True)]
        finally:
            store.close()
    return sorted(found, key=lambda i: str(i.get("first_call_at")))
