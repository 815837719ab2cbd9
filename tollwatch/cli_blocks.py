"""`tollwatch block`, `unblock`, `blocks` and `dialplan`: plain functions for the main app.

Register them with `app.command()(block)`, `app.command()(unblock)`, `app.command()(blocks)`,
`app.command()(dialplan)`. Block and unblock connect to the configured AMI servers (all, or
`--pbx NAME`) with a short direct session, act, record in `<data_dir>/blocks.sqlite3` and print
one line. They act even when `remediation.enabled` is false: dry run only holds back the
daemon's automatic blocks, an admin's explicit command is carried out. The safety rules
(emergency, service, allowlisted, home country) apply to them as well; the hourly rate limit
does not. A block's expiry is lifted by the running daemon; if none runs, the dialplan still
ignores an expired entry.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer

from tollwatch.alerting.remediation import (
    AmiClient,
    Blocker,
    BlockRefused,
    BlockStore,
    PrefixError,
    Target,
    astdb,
    read_prefix,
    sync,
)
from tollwatch.alerting.remediation.astdb import ActionSender
from tollwatch.alerting.remediation.dialplan import render
from tollwatch.alerting.textsafe import plain
from tollwatch.config import ConfigError, Settings
from tollwatch.config.fleet import is_fleet_file
from tollwatch.config.load import default_path
from tollwatch.config.schema import AmiServer
from tollwatch.config.secrets import SecretError, read_secret
from tollwatch.config.types import parse_duration
from tollwatch.rules.destinations import Classifier
from tollwatch.settings import load

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="Settings file (TOML).", dir_okay=False)
]
PbxOpt = Annotated[
    str | None, typer.Option("--pbx", help="Only this AMI server (default: every one); a fleet "
                             "file: this PBX (required).")
]
SourceOpt = Annotated[
    str | None, typer.Option("--source", help="A source extension instead of a prefix.")
]
PrefixArg = Annotated[
    str | None,
    typer.Argument(help="E.164 prefix, a calling code or longer: 232, +232, 1-876.",
                   show_default=False),
]


def _say(line: str) -> None:
    typer.echo(plain(line))


def _fail(line: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {plain(line)}", err=True)
    return typer.Exit(code)


def _settings(config: Path | None, pbx: str | None = None) -> Settings:
    """The settings file's; for a fleet file, the named PBX's as its daemon pipeline runs them
    (its own AMI connection, remediation policy and `<data_dir>/pbx/<name>/` blocks)."""
    path = config if config is not None else default_path()
    if path is not None and is_fleet_file(path):
        return _fleet_pbx(path, pbx)
    try:
        return load(config)
    except ConfigError as exc:
        prefix = f"{exc.source}: " if exc.source else ""
        raise _fail(prefix + "; ".join(exc.errors)) from None


def _user() -> str:
    name = os.environ.get("SUDO_USER")
    if not name:
        try:
            name = getpass.getuser()
        except Exception:
            name = "unknown"
    return name


def _target(settings: Settings, prefix: str | None, source: str | None) -> Target:
    """The target named on the command line; a converted dialed form is said on stderr."""
    if (prefix is None) == (source is None):
        raise _fail("give a PREFIX or --source EXT (one of them)")
    if source is not None:
        return Target("source", source)
    assert prefix is not None
    try:
        check = read_prefix(prefix, Classifier(settings))
    except PrefixError as exc:
        raise _fail(str(exc)) from None
    if check.note:
        typer.echo(f"note: {check.note}", err=True)
    return Target("prefix", check.digits)


def _servers(settings: Settings, pbx: str | None) -> list[AmiServer]:
    servers = [s for s in settings.ami if pbx is None or s.name == pbx]
    if not servers:
        raise _fail(f"no AMI server named {pbx!r} in [[ami]]" if pbx else
                    "no AMI server configured ([[ami]] in the settings)")  # fmt: skip
    return servers


async def _connect(stack: AsyncExitStack, servers: Sequence[AmiServer]) -> dict[str, ActionSender]:
    senders: dict[str, ActionSender] = {}
    for srv in servers:
        secret = read_secret(srv.secret_env, srv.secret_file, f"ami {srv.name}")
        client = AmiClient(srv.name, srv.host, srv.port, srv.username, secret)
        senders[srv.name] = await stack.enter_async_context(client)
    return senders


def _when(epoch: int, settings: Settings) -> str:
    zone = ZoneInfo(settings.site.timezone)
    return datetime.fromtimestamp(epoch, zone).strftime("%Y-%m-%d %H:%M %Z")


async def block_async(
    settings: Settings, target: Target, pbx: str | None, ttl: float | None, reason: str,
    user: str,
) -> str:  # fmt: skip
    """Block on the PBX(es) now; the line to print. Raises BlockRefused, ConnectionError,
    SecretError."""
    servers = _servers(settings, pbx)
    store = BlockStore.in_dir(settings.daemon.data_dir)
    try:
        blocker = Blocker(settings, {}, store)
        why = blocker.guard.check(target)  # refuse before connecting anywhere
        if why:
            raise BlockRefused(why)
        async with AsyncExitStack() as stack:
            blocker.senders = await _connect(stack, servers)
            result = await blocker.block(target, [s.name for s in servers], reason=reason,
                                         origin=f"cli:{user}", ttl=ttl)  # fmt: skip
    finally:
        store.close()
    rec = result.records[0]
    names = ",".join(r.pbx for r in result.records)
    line = (f"blocked {target.what} on {names} until {_when(rec.expires_at, settings)} "
            f"(lift: {target.lift})")  # fmt: skip
    if result.failed:
        line += "; NOT applied on " + ", ".join(f"{k} ({v})" for k, v in result.failed.items())
    return line


async def unblock_async(settings: Settings, target: Target, pbx: str | None, user: str) -> str:
    servers = _servers(settings, pbx)
    store = BlockStore.in_dir(settings.daemon.data_dir)
    try:
        async with AsyncExitStack() as stack:
            senders = await _connect(stack, servers)
            blocker = Blocker(settings, senders, store)
            lifted = await blocker.unblock(target, [s.name for s in servers], f"cli:{user}")
    finally:
        store.close()
    names = ",".join(s.name for s in servers)
    if not lifted:
        return f"unblocked {target} on {names} (tollwatch had no active block of it)"
    return f"unblocked {target} on {names}"


def _fleet_pbx(path: Path, pbx: str | None) -> Settings:
    from tollwatch.config.fleet import load_fleet
    from tollwatch.fleet_pipeline import live_settings
    from tollwatch.rules.base import check_rules

    try:
        fleet = load_fleet(path, None, rule_checks=check_rules)
    except ConfigError as exc:
        raise _fail(f"{exc.source}: " + "; ".join(exc.errors)) from None
    if pbx is None or pbx not in fleet.order:
        why = "name the PBX with --pbx NAME" if pbx is None else f"no PBX named {pbx!r}"
        raise _fail(f"{path} is a fleet: {why} (one of: {', '.join(fleet.order)})")
    if pbx in fleet.errors:
        raise _fail(f"{path}: " + "; ".join(fleet.errors[pbx]))
    settings = fleet.settings[pbx]
    return live_settings(pbx, settings, Path(settings.daemon.data_dir))


def block(
    prefix: PrefixArg = None,
    source: SourceOpt = None,
    ttl: Annotated[
        str | None, typer.Option("--ttl", help="How long: 30m, 24h, 7d. Default: remediation.ttl.")
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in AstDB and the log).")] = (
        "blocked by an administrator"
    ),
    pbx: PbxOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Block calls to an E.164 prefix (or from a source extension) in Asterisk now."""
    settings = _settings(config, pbx)
    target = _target(settings, prefix, source)
    try:
        seconds = parse_duration(ttl).total_seconds() if ttl is not None else None
    except ValueError as exc:
        raise _fail(f"--ttl: {exc}") from None
    if seconds is not None and seconds <= 0:
        raise _fail("--ttl must be longer than 0s")
    try:
        line = asyncio.run(block_async(settings, target, pbx, seconds, reason, _user()))
    except BlockRefused as exc:
        raise _fail(f"refused to block {target}: {exc}") from None
    except (ConnectionError, SecretError, OSError) as exc:
        raise _fail(str(exc), 1) from None
    _say(line)
    if "NOT applied" in line:
        raise typer.Exit(1)


def unblock(
    prefix: PrefixArg = None,
    source: SourceOpt = None,
    pbx: PbxOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Lift a block now (AMI DBDel) and record who lifted it."""
    settings = _settings(config, pbx)
    target = _target(settings, prefix, source)
    try:
        line = asyncio.run(unblock_async(settings, target, pbx, _user()))
    except (ConnectionError, SecretError, OSError) as exc:
        raise _fail(str(exc), 1) from None
    _say(line)


async def astdb_states(
    settings: Settings, servers: Sequence[AmiServer]
) -> dict[str, dict[tuple[str, str], str] | str]:
    """Per PBX: AstDB's block entries (DBGetTree), or why they could not be read."""
    families = astdb.families(settings.remediation.family)
    out: dict[str, dict[tuple[str, str], str] | str] = {}
    for srv in servers:
        try:
            secret = read_secret(srv.secret_env, srv.secret_file, f"AMI {srv.name}")
            async with AmiClient(srv.name, srv.host, srv.port, srv.username, secret,
                                 timeout=5) as client:  # fmt: skip
                out[srv.name] = await sync.astdb_state(client, families)
        except (ConnectionError, SecretError, OSError, astdb.ActionError) as exc:
            out[srv.name] = str(exc) or type(exc).__name__
    return out


def blocks(
    show_all: Annotated[bool, typer.Option("--all", help="History too (lifted blocks).")] = False,
    check: Annotated[bool, typer.Option(
        "--astdb/--no-astdb", help="Also read AstDB on each PBX and flag drift.")] = True,
    pbx: PbxOpt = None,
    config: ConfigOpt = None,
) -> None:
    """List blocks (active, or all with --all) beside what AstDB holds; flag drift."""
    settings = _settings(config, pbx)
    store = BlockStore.in_dir(settings.daemon.data_dir)
    try:
        rows = store.history(1000) if show_all else store.active()
        active = store.active()
    finally:
        store.close()
    if pbx is not None:
        rows = [r for r in rows if r.pbx == pbx]
        active = [r for r in active if r.pbx == pbx]
    servers = _servers(settings, pbx) if settings.ami else []
    states = asyncio.run(astdb_states(settings, servers)) if check and servers else {}
    if not rows:
        _say("no active blocks" if not show_all else "no blocks recorded")
    for rec in rows:
        target = Target(rec.kind, rec.value)
        state = (
            "active"
            if rec.active
            else f"lifted {_when(rec.lifted_at or 0, settings)} by {rec.lifted_by}"
        )
        dry = " WOULD BLOCK (dry run: not in AstDB)" if rec.dry_run else ""
        where = ""
        pbx_state = states.get(rec.pbx)
        if rec.active and not rec.dry_run and isinstance(pbx_state, dict):
            where = ("  AstDB: yes" if (rec.kind, rec.value) in pbx_state
                     else "  AstDB: MISSING (calls pass; the daemon re-applies it)")  # fmt: skip
        _say(f"{target!s:<16} {rec.pbx:<12} until {_when(rec.expires_at, settings)}  "
             f"{rec.origin:<14} {state}{dry}  {plain(rec.reason)}  (lift: {target.lift})"
             f"{where}")  # fmt: skip
    now = int(time.time())
    drifted = False
    for pbx, got in states.items():
        if isinstance(got, str):
            _say(f"AstDB of {pbx} not read: {got}")
            continue
        found = sync.drift([r for r in active if r.pbx == pbx], got, now)
        drifted = drifted or bool(found.missing or found.unknown)
        for rec in found.missing:
            _say(f"DRIFT {pbx}: {Target(rec.kind, rec.value)} is active here but not in AstDB")
        for kind, value, val in found.unknown:
            _say(f"DRIFT {pbx}: AstDB blocks {Target(kind, value)} ({plain(val)}) "
                 "with no active tollwatch record")  # fmt: skip
        for kind, value, val in found.expired_in_astdb:
            _say(f"note {pbx}: AstDB still holds expired {Target(kind, value)} ({plain(val)}); "
                 "the dialplan ignores it")  # fmt: skip
    if drifted:
        raise typer.Exit(1)


def dialplan(
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write here (default: stdout).", dir_okay=False),
    ] = None,
    sound: Annotated[
        str | None, typer.Option("--sound", help="Play this before rejecting, e.g. ss-noservice.")
    ] = None,
    pbx: Annotated[
        str | None, typer.Option("--pbx", help="A fleet file: this PBX's settings.")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Write the dialplan snippet that enforces blocks (for #include in extensions.conf)."""
    settings = _settings(config, pbx)
    try:
        text = render(settings, sound=sound)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise _fail(f"{out}: cannot write ({exc.strerror or exc})") from None
    _say(f"wrote {out} (include it in extensions.conf and call "
         "Gosub(tollwatch-check,s,1(${EXTEN})) in outbound routes)")  # fmt: skip


__all__ = ["block", "block_async", "blocks", "dialplan", "unblock", "unblock_async"]
