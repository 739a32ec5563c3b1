"""Text that comes from elsewhere, made safe to print on a terminal.

Much of what the commands print is chosen by someone else: a holder picks its
description and release URL, its webhook's answers become ``last_error`` and the
offline report's ``detail``, and a registry writes each problem's ``detail``. Printed
as they are, an escape sequence in them could clear the operator's screen, retitle the
window or hide a line, and rich markup in them (``[bold red]ALL RELEASED OK``) would be
rendered as if the command had said it. So every such value goes through ``shown()``
(for rich output) or ``clean()`` (for plain text) before it reaches the terminal, and
``--json`` output escapes what a terminal would act on.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from rich.markup import escape

__all__ = ["clean", "json_text", "shown"]

#: Whole escape sequences, dropped with their parameters: CSI (``ESC [`` or C1 ``CSI``)
#: up to its final byte; OSC, DCS, SOS, PM and APC strings up to their terminator (BEL,
#: ``ESC \`` or C1 ``ST``) or the end of the text; any other ``ESC`` sequence.
_SEQUENCE: Final = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f]).*?(?:\x07|\x1b\\|\x9c|\Z)"
    r"|\x1b[ -/]*[0-~]?",
    re.DOTALL,
)
#: What is left that a terminal acts on or that reorders text: C0 and C1 controls, DEL,
#: and the bidirectional overrides and isolates (text that reads differently than it is).
_CONTROL: Final = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: What JSON may leave raw in a string that a terminal acts on (it escapes C0 itself).
_RAW_IN_JSON: Final = re.compile("[\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: Whitespace controls become a space, so that words stay apart on one line.
_SPACES: Final = frozenset("\t\n\r\v\f")


def _replace(match: re.Match[str]) -> str:
    return " " if match.group() in _SPACES else ""


def clean(value: object) -> str:
    """``value`` as one line of plain text: escape sequences and control characters gone."""
    return _CONTROL.sub(_replace, _SEQUENCE.sub("", str(value)))


def shown(value: object) -> str:
    """``value`` for rich output: cleaned, and its ``[`` never read as markup."""
    return escape(clean(value))


def json_text(data: Any) -> str:
    """``data`` as indented JSON; what a terminal would act on is written as ``\\uXXXX``.

    JSON escapes C0 controls itself; C1 controls, DEL and the bidirectional controls it
    may leave raw, so they are escaped here (still the same JSON value).
    """
    text = json.dumps(data, indent=2, ensure_ascii=False)
    return _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
