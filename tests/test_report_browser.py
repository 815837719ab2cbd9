"""The report reads on a 390 px phone: headless Chromium (Debian's `chromium` package, listed in
.ci/apt-packages.txt) lays the page out 390 CSS px wide and nothing may stick out sideways."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.test_report import ATTACK_SOURCE, build, traffic
from tollwatch.state import StateStore

pytestmark = pytest.mark.browser

WIDTH = 390
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Measured after load (images decoded): the page's scroll width against the viewport, and the
# first elements whose right edge passes it (to name the culprit when it fails).
PROBE = """<script>
window.addEventListener("load", function () {
  var w = window.innerWidth, sw = document.documentElement.scrollWidth, bad = [];
  document.querySelectorAll("body *").forEach(function (e) {
    var r = e.getBoundingClientRect();
    if (r.right > w + 0.5 && bad.length < 8)
      bad.push(e.tagName.toLowerCase() + "." + e.className + " right=" + Math.round(r.right));
  });
  parent.postMessage(JSON.stringify({inner: w, scroll: sw, bad: bad}), "*");
});
</script>"""
# Chromium's headless window is at least 500 px wide: the page goes in a WIDTH px frame (its
# viewport then is WIDTH px, as on the phone), which posts its figures to this page's DOM.
HARNESS = """<!DOCTYPE html><html><body style="margin:0">
<iframe src="{src}" style="width:{width}px;height:1800px;border:0;display:block"></iframe>
<script>
window.addEventListener("message", function (ev) {{
  var p = document.createElement("pre");
  p.id = "probe";
  p.textContent = ev.data;
  document.body.appendChild(p);
}});
</script></body></html>"""


def layout(page: Path, tmp: Path) -> dict[str, Any]:
    """Open `page` (with the probe added) in headless Chromium, WIDTH px wide; the probe's
    figures: {"inner": viewport width, "scroll": the page's scroll width, "bad": [elements]}."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    probed = tmp / f"probed-{page.name}"
    probed.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"),
                      encoding="utf-8")
    harness = tmp / f"harness-{page.name}"
    harness.write_text(HARNESS.format(src=probed.name, width=WIDTH), encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp / 'profile'}",
           "--window-size=800,2000", "--virtual-time-budget=10000", "--dump-dom",
           harness.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert found, f"no probe in Chromium's DOM (exit {proc.returncode}): {proc.stderr[-2000:]}"
    raw = found.group(1).replace("&quot;", '"').replace("&amp;", "&")
    result: dict[str, Any] = json.loads(raw)
    return result


def test_the_report_has_no_horizontal_overflow_at_390_px(tmp_path: Path) -> None:
    cdr = traffic()
    long_name = "x" * 120 + "<b>" + "y" * 80  # one long unbroken CDR string, with markup
    for r in cdr.rows:
        if r.src == ATTACK_SOURCE:
            r.src = long_name
    store = StateStore(tmp_path / "state.sqlite3")  # empty: every flagged call listed unseen
    try:
        b = build(tmp_path, store, cdr)
    finally:
        store.close()
    assert b.result.figures["reconciliation"]["unseen"]  # the wide tables are on the page
    got = layout(b.result.html, tmp_path)
    assert got["inner"] == WIDTH, got
    assert got["scroll"] <= got["inner"] and not got["bad"], got


def test_the_probe_sees_a_page_that_overflows(tmp_path: Path) -> None:
    """The check can fail: a table wider than the phone is caught and named."""
    page = tmp_path / "wide.html"
    page.write_text('<!DOCTYPE html><html><head><meta name="viewport" '
                    'content="width=device-width"></head><body><table style="width:900px">'
                    "<tr><td>wide</td></tr></table></body></html>", encoding="utf-8")
    got = layout(page, tmp_path)
    assert got["inner"] == WIDTH
    assert got["scroll"] > WIDTH and any(b.startswith("table") for b in got["bad"]), got


def test_the_fleet_summary_has_no_horizontal_overflow_at_390_px(tmp_path: Path) -> None:
    from tollwatch.fleet_report import FleetReport, write_summary

    b = build(tmp_path, None)
    summary = {"pbx": "tokyo-main-office-pbx", **b.result.summary}
    report = FleetReport(summaries={"tokyo-main-office-pbx": summary},
                         failed={"osaka": "error: /var/log/asterisk/cdr-csv/" + "x" * 150})
    folder, _ = write_summary(tmp_path / "out", ["tokyo-main-office-pbx", "osaka"], report)
    got = layout(folder / "index.html", tmp_path)
    assert got["inner"] == WIDTH, got
    assert got["scroll"] <= got["inner"] and not got["bad"], got
