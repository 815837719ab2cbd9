"""Remediation: block toll-fraud destinations and sources in Asterisk, and hang up.

The `Blocker` is an alerter: the daemon hands it incident changes; when an incident reaches
`remediation.severity` (and one of `remediation.rules` fired, if set) it blocks what the
evidence shows (`scope`: the fraudulent destinations' narrowest prefix, and/or the source's
international calls), writing AstDB keys the dialplan snippet (`tollwatch dialplan`) checks:

    DBPut Family <family>/block Key <E.164 prefix digits> Val "<expiry epoch>|<reason>"
    DBPut Family <family>/src   Key <extension>           Val "<expiry epoch>|<reason>"

and hangs up the incident's calls still up that a block applies to. Every block expires
(`ttl`), is lifted by `run()` / `expire()` with DBDel, is recorded in
`<data_dir>/blocks.sqlite3`, and is reported through `notify("blocked"|"unblocked", view)`.
With `remediation.enabled = false` (the default) it only logs, records and notifies what it
would do: nothing is sent to Asterisk.
"""

from tollwatch.alerting.remediation.astdb import ActionError, ActionSender, AmiClient, block_value
from tollwatch.alerting.remediation.blocker import Blocker, BlockRefused, BlockResult
from tollwatch.alerting.remediation.dialplan import generate
from tollwatch.alerting.remediation.policy import Guard, Target, qualifies
from tollwatch.alerting.remediation.prefixes import PrefixCheck, PrefixError, read_prefix
from tollwatch.alerting.remediation.scope import NoBaseline, Profile, Scope, SiteProfile
from tollwatch.alerting.remediation.store import BlockRecord, BlockStore
from tollwatch.alerting.remediation.views import block_entry

__all__ = [
    "ActionError",
    "ActionSender",
    "AmiClient",
    "BlockRecord",
    "BlockRefused",
    "BlockResult",
    "BlockStore",
    "Blocker",
    "Guard",
    "NoBaseline",
    "PrefixCheck",
    "PrefixError",
    "Profile",
    "Scope",
    "SiteProfile",
    "Target",
    "block_entry",
    "block_value",
    "generate",
    "qualifies",
    "read_prefix",
]
