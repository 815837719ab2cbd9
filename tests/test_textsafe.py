from __future__ import annotations

from rich.console import Console

from tollwatch.alerting.textsafe import csv_cell, markup, plain


def test_plain_shows_control_characters() -> None:
    assert plain("a\x1b[31mred\x07") == "a\\x1b[31mred\\x07"
    assert plain("tab\tok") == "tab\tok"
    assert plain("line\nbreak") == "line\\x0abreak"
    assert plain("\x9bc1") == "\\x9bc1"


def test_markup_renders_literally() -> None:
    console = Console(record=True, width=80)
    console.print(markup("[/bold][link=http://x]ext 209[/link]"))
    assert "[/bold][link=http://x]ext 209[/link]" in console.export_text()


def test_csv_cell_escapes_formulas() -> None:
    assert csv_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert csv_cell("+81312345678") == "'+81312345678"
    assert csv_cell("-1") == "'-1"
    assert csv_cell("@SUM") == "'@SUM"
    assert csv_cell("209") == "209"


def test_clip_keeps_short_text_and_cuts_long_text() -> None:
    from tollwatch.alerting.textsafe import clip

    assert clip("PJSIP/carrier") == "PJSIP/carrier"
    assert clip("9" * 81) == "9" * 77 + "..." and len(clip("9" * 5000, 32)) == 32
    assert clip("9" * 80) == "9" * 80
