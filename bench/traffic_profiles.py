"""Site profiles for gen_traffic.py: size, country, dial plan, the countries a site calls.

Numbers are built from national-number templates per country (``"55" + 8 digits`` is Mexico
City), so every generated number classifies to the right region under libphonenumber.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# country -> (calling code, [(national prefix, digits after it)])
NUMBERS: dict[str, tuple[str, list[tuple[str, int]]]] = {
    "US": ("1", [("212", 7), ("415", 7), ("646", 7), ("312", 7), ("617", 7), ("206", 7)]),
    "CN": ("86", [("10", 8), ("21", 8), ("139", 8)]),
    "KR": ("82", [("2", 8), ("10", 8)]),
    "GB": ("44", [("20", 8), ("7700", 6)]),
    "DE": ("49", [("30", 8), ("89", 8)]),
    "FR": ("33", [("1", 8), ("6", 8)]),
    "SG": ("65", [("6", 7), ("9", 7)]),
    "TW": ("886", [("2", 8)]),
    "TH": ("66", [("2", 7)]),
    "VN": ("84", [("24", 8)]),
    "IN": ("91", [("98", 8), ("22", 8)]),
    "PH": ("63", [("2", 8)]),
    "JP": ("81", [("3", 8), ("6", 8), ("90", 8)]),
    "MX": ("52", [("55", 8), ("33", 8), ("81", 8)]),  # high risk on the shipped list
    "ES": ("34", [("91", 7), ("93", 7)]),  # high risk
    "PL": ("48", [("22", 7)]),  # high risk
    "TR": ("90", [("212", 7)]),  # high risk
    "BE": ("32", [("2", 7)]),  # high risk
    "CH": ("41", [("44", 7)]),  # high risk
    "SE": ("46", [("8", 8)]),  # high risk
    "IL": ("972", [("3", 7)]),  # high risk
    "CL": ("56", [("2", 8)]),  # high risk
    "MA": ("212", [("522", 6)]),  # high risk
}

# Rarely and irregularly called high-risk countries (a few calls a month, not routine).
RARE_HIGH_RISK = ("TR", "PL", "CL", "MA", "BE", "SE")


@dataclass(frozen=True)
class Profile:
    name: str
    extensions: int
    first_ext: int
    country: str
    timezone: str
    utc_offset_h: int  # fixed offset (zones chosen without DST)
    access: str  # outside-line access code
    intl_prefix: str
    national: list[tuple[str, int]]  # domestic numbers as dialed after the access code
    calls_per_day: int  # weekday calls of all kinds (internal, inbound, outbound)
    intl_share: float
    countries: dict[str, float]  # international mix (weights)
    routine: dict[str, int] = field(default_factory=dict)  # routine country -> team size
    night_desks: int = 0
    rare_high_risk_per_month: float = 1.0


PROFILES: dict[str, Profile] = {
    "small": Profile(
        name="small", extensions=20, first_ext=201, country="JP", timezone="Asia/Tokyo",
        utc_offset_h=9, access="", intl_prefix="010",
        national=[("03", 8), ("06", 8), ("090", 8), ("080", 8), ("0120", 6)],
        calls_per_day=50, intl_share=0.03,
        countries={"US": 30, "CN": 25, "KR": 20, "GB": 10, "ES": 10, "DE": 5},
        routine={"ES": 3}, night_desks=0, rare_high_risk_per_month=1.0,
    ),
    "medium": Profile(
        name="medium", extensions=300, first_ext=2000, country="US",
        timezone="America/Phoenix", utc_offset_h=-7, access="9", intl_prefix="011",
        national=[("1602", 7), ("1480", 7), ("1212", 7), ("1415", 7), ("602", 7)],
        calls_per_day=640, intl_share=0.04,
        countries={"MX": 35, "GB": 15, "IN": 15, "DE": 10, "CN": 10, "PH": 10, "JP": 5},
        routine={"MX": 25}, night_desks=3, rare_high_risk_per_month=3.0,
    ),
    "large": Profile(
        name="large", extensions=8000, first_ext=10000, country="JP", timezone="Asia/Tokyo",
        utc_offset_h=9, access="", intl_prefix="010",
        national=[("03", 8), ("06", 8), ("045", 7), ("052", 7), ("090", 8), ("080", 8)],
        calls_per_day=17000, intl_share=0.06,
        countries={
            "US": 25, "CN": 20, "KR": 12, "GB": 8, "DE": 6, "SG": 5, "TW": 5, "TH": 4,
            "VN": 4, "IN": 3, "FR": 3, "MX": 2, "ES": 2, "CH": 1, "IL": 1,
        },
        routine={"MX": 60, "ES": 60, "CH": 30, "IL": 30}, night_desks=40,
        rare_high_risk_per_month=12.0,
    ),
}

# Relative call volume by local hour on a working day; closed days get CLOSED_FACTOR of it.
HOUR_WEIGHTS = (
    0.004, 0.003, 0.002, 0.002, 0.002, 0.004, 0.01, 0.05,  # 00-07
    0.35, 1.0, 1.0, 1.0, 0.55, 0.95, 1.0, 1.0,  # 08-15
    0.95, 0.8, 0.45, 0.22, 0.1, 0.05, 0.02, 0.01,  # 16-23
)  # fmt: skip
CLOSED_FACTOR = 0.04
