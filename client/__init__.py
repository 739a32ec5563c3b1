"""pageholder client: talk to a pageholder registry, and answer its release calls.

``ReleaseReceiver`` is the holder's side of the release webhook: an ASGI app that
verifies the registry's signed ``page.release`` calls and hands each one, as a
``ReleaseRequest``, to the subsystem's callback, whose ``ReleaseResult`` is the answer.
``serve_receiver`` serves one alone on loopback.
"""

from __future__ import annotations

from ._receiver import (
    Page,
    ReleaseReceiver,
    ReleaseRequest,
    ReleaseResult,
    RunningReceiver,
    serve_receiver,
)

__all__ = [
    "Page",
    "ReleaseReceiver",
    "ReleaseRequest",
    "ReleaseResult",
    "RunningReceiver",
    "serve_receiver",
]
