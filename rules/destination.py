"""What rules see of a call's destination: `Destination`, the columns classification adds
(`DEST_COLUMNS`) and the classes it knows (`CLASSES`). Made by `rules.destinations.Classifier`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

CLASSES = ("internal", "emergency", "service", "domestic", "international", "unknown")

# Columns added by Classifier.classify_df.
DEST_COLUMNS = (
    "dest_class",
    "e164",
    "calling_code",
    "region",
    "region_name",
    "high_risk",
    "risk_prefix",
    "allowlisted",
    "rate",
)

BLOCK_DIGITS = 3  # a number block: the number less its last 3 digits (+2327654xxx)


@dataclass(unsafe_hash=True)
class Destination:
    """Where a dialed string goes. Read-only by convention (never assigned after it is made:
    one object is shared by every call to the number, live and batch); hashed and compared
    by its fields, as a frozen dataclass would be. Not frozen because a frozen dataclass's
    `__init__` sets each field through `object.__setattr__`: ~2.3 us a Destination instead of
    ~0.35 us, a fifth of the cost of turning a batch's calls into Call objects
    (rules.batch). `number_key`/`block_key` are cached in its `__dict__` on first use."""

    dialed: str
    dest_class: str
    e164: str | None
    calling_code: str | None
    region: str | None
    region_name: str | None
    high_risk: bool
    risk_prefix: str | None
    allowlisted: bool
    rate: float | None

    @property
    def international(self) -> bool:
        return self.dest_class == "international"

    @cached_property
    def number_key(self) -> str:
        """The incident/window key of the destination number: "dest:+23276543210"."""
        return "dest:" + (self.e164 or self.dialed)

    @cached_property
    def block_key(self) -> str:
        """The key of its number block: "dest:+2327654xxx" (short numbers: the number)."""
        number = self.e164 or self.dialed
        if len(number.lstrip("+")) <= BLOCK_DIGITS + 4:
            return "dest:" + number
        return "dest:" + number[:-BLOCK_DIGITS] + "x" * BLOCK_DIGITS

    @classmethod
    def from_row(cls, dialed: str, row: dict[str, Any]) -> Destination:
        """From a row with DEST_COLUMNS (what classify_df adds)."""
        return cls(
            dialed,
            row["dest_class"],
            row["e164"],
            row["calling_code"],
            row["region"],
            row["region_name"],
            bool(row["high_risk"]),
            row["risk_prefix"],
            bool(row["allowlisted"]),
            row["rate"],
        )
