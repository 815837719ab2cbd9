"""Asterisk 12 to 22 (AMI protocol 2.x to 11.x): the tracker's own vocabulary.

Asterisk 12 replaced ``Dial`` (SubEvent Begin/End), ``Bridge`` and ``Masquerade`` by
``DialBegin``/``DialEnd``, ``BridgeEnter``/``BridgeLeave`` and ``Rename``; 13, 16, 18, 20 and
22 (the LTS releases in the field) only added headers since (Linkedid, DestLinkedid, ...), so
their call events pass through unchanged.
"""

from __future__ import annotations

from tollwatch.cdr_ingest.live.ami_dialects import (
    CALL_VOCABULARY,
    AmiDialect,
    Msg,
    protocol_major,
    register,
)

# AMI protocol major version -> Asterisk release (AMI 2.x was Asterisk 12 and 13).
RELEASES = {2: "12/13", 3: "14", 4: "15", 5: "16", 6: "17", 7: "18", 8: "19", 9: "20",
            10: "21", 11: "22"}  # fmt: skip


@register
class Asterisk12(AmiDialect):
    name = "asterisk12"
    description = "Asterisk 12 or later (DialBegin/DialEnd)"
    protocol = (2, 99)
    events = CALL_VOCABULARY

    def translate(self, msg: Msg) -> list[Msg]:
        return [msg]

    def release(self, version: str) -> str:
        major = protocol_major(version)
        name = RELEASES.get(major or 0, f"{max(RELEASES)}+" if (major or 0) > 11 else "12+")
        return f"Asterisk {name} (AMI {version})"
