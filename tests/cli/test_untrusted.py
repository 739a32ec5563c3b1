"""What a holder controls reaches the terminal as text: no escape sequence, no markup."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from pageholder.cli.untrusted import clean, json_text, shown

#: What a hostile holder's webhook answer could carry: retitle the window (OSC), clear the
#: screen and home the cursor (CSI), reset the terminal (RIS), a C1 CSI, a carriage return
#: that overwrites the line, a right-to-left override, and rich markup.
HOSTILE = (
    "\x1b]0;pwned\x07\x1b]8;;http://evil/\x1b\\link\x1b]8;;\x1b\\"
    "\x1b[2J\x1b[H\x1bc\x9b31m\rfake\u202e[bold red]ALL RELEASED OK[/bold red]\x00\x7f"
)


def test_clean_drops_sequences_and_controls_and_keeps_the_words() -> None:
    text = clean(HOSTILE)
    assert text == "link fake[bold red]ALL RELEASED OK[/bold red]"
    assert all(ch.isprintable() for ch in text)


@pytest.mark.parametrize(
    "raw",
    ["\x1b", "\x1b[", "\x1b]0;no terminator", "\x9d0;c1 osc", "\x1bP dcs", "a\tb\nc\r\nd"],
)
def test_clean_never_leaves_a_control_character(raw: str) -> None:
    assert all(ch.isprintable() or ch == " " for ch in clean(raw)), repr(clean(raw))


def test_shown_is_printed_literally_by_rich() -> None:
    console = Console(record=True, width=200, force_terminal=True, color_system="truecolor")
    console.print(f"last error: {shown(HOSTILE)}")
    printed = console.export_text()
    assert "[bold red]ALL RELEASED OK[/bold red]" in printed
    styled = console.export_text(styles=True)
    assert "\x1b[1;31m" not in styled  # the holder's markup did not turn into bold red


def test_json_text_is_the_same_value_with_nothing_raw_a_terminal_acts_on() -> None:
    data = {"last_error": HOSTILE, "created": "2026-12-01T16:46:16.066595Z", "n": 1}
    text = json_text(data)
    assert json.loads(text) == data
    assert not any(0x7F <= ord(ch) <= 0x9F or ch in "\x1b\u202e" for ch in text)
