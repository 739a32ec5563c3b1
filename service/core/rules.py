"""The registry's rules, defined once: names, limits and defaults that the core
enforces and the HTTP schemas, the client's documentation and the tests import."""

from __future__ import annotations

import re
from typing import Final

#: A holder's name (DESIGN.md: ``[a-z0-9][a-z0-9_.-]{0,63}``).
HOLDER_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
#: The same rule as a JSON-Schema pattern (anchored).
HOLDER_NAME_PATTERN: Final = f"^{HOLDER_NAME.pattern}$"

#: A holder's per-call webhook timeout, seconds.
MIN_TIMEOUT_S: Final = 0.1
MAX_TIMEOUT_S: Final[float] = 30
DEFAULT_TIMEOUT_S: Final = 10.0

#: The largest pfn the API accepts (52 bits of page frame: 2**64 bytes of 4 KiB pages).
MAX_PFN: Final = 2**52
#: The largest memory block number the API accepts.
MAX_BLOCK_ID: Final = 2**40
#: Pages in one ``{start_pfn, nr_pages}`` range of a batch.
MAX_RANGE_PAGES: Final = 2**20
#: Entries (pages plus range pages) in one batch request.
MAX_BATCH_ENTRIES: Final = 65536

#: An offline's deadline, seconds: the default and the most it may be given.
DEFAULT_DEADLINE_S: Final = 30.0
MAX_DEADLINE_S: Final[float] = 3600

#: A holder's lease, seconds (``lease_ttl_s``; None = no lease).
MIN_LEASE_TTL_S: Final[float] = 1
MAX_LEASE_TTL_S: Final[float] = 3600
#: The longest a release call to an *expired* holder may take: it has already shown no
#: sign of life, so an offline learns quickly that it stays dead (``lease_expired``).
ORPHAN_CALL_TIMEOUT_S: Final = 1.0
#: The longest one slice of a reclaim holds a zone's write lock (it then yields).
RECLAIM_SLICE_S: Final = 0.005
