"""One example problem document per ``code``, for the OpenAPI document and /docs.

``documented()`` (problems.py) puts, under each status a route answers, one named
example per code that route can answer, built from this table, so that a 401 shows an
``unauthorized`` problem and a 409 of ``PUT /hold`` shows ``page_held``, not another
route's codes. A test proves every code in ``problems.STATUS`` has its example here.
"""

from __future__ import annotations

from typing import Any, Final

#: code -> (summary shown in /docs' example list, detail, extension members)
EXAMPLES: Final[dict[str, tuple[str, str, dict[str, Any]]]] = {
    "internal_error": (
        "the server failed",
        "the server failed to handle this request; see its log",
        {},
    ),
    "invalid_request": (
        "a field is invalid",
        "invalid request: order: Input should be less than or equal to 18",
        {"errors": [{"field": "order", "message": "Input should be less than or equal to 18"}]},
    ),
    "misaligned": (
        "pfn not aligned to the order",
        "pfn 1048577 is not aligned to an order-9 hold (a multiple of 512)",
        {"pfn": 1048577, "order": 9},
    ),
    "crosses_zone": (
        "the hold would span two zones",
        "the order-18 hold at pfn 786432 crosses from zone 0/DMA32 into 0/Normal",
        {"pfn": 786432, "order": 18},
    ),
    "not_found": ("no such route", "no route GET /v1/nothing", {}),
    "pfn_not_found": (
        "no zone has this pfn",
        "pfn 4294967296 is in no zone of this machine",
        {"pfn": 4294967296},
    ),
    "holder_not_found": ("no such holder", "no holder named 'nic0'", {"holder": "nic0"}),
    "page_not_held": ("nothing holds this page", "pfn 1048576 is not held", {"pfn": 1048576}),
    "block_not_found": (
        "no such memory block",
        "memory block 999 does not exist",
        {"block": 999},
    ),
    "conflict": ("a conflict", "the request conflicts with the registry's state", {}),
    "holder_exists": ("the name is taken", "holder 'nic0' already exists", {"holder": "nic0"}),
    "holder_has_holds": (
        "the holder still holds pages",
        "holder 'nic0' still has 3 holds; delete with force=true to drop them",
        {"holder": "nic0", "holds": 3},
    ),
    "page_held": (
        "another holder holds it",
        "pfn 1048576 (order 0) is held by 'gpu0'",
        {"holder": "gpu0", "head_pfn": 1048576, "order": 0},
    ),
    "page_releasing": (
        "a release of it is in flight",
        "pfn 1048576 is being released",
        {"head_pfn": 1048576, "order": 9},
    ),
    "not_head": (
        "pfn inside a hold, not its head",
        "pfn 1048600 is inside the order-9 hold at pfn 1048576; unset its head",
        {"head_pfn": 1048576, "order": 9, "holder": "nic0"},
    ),
    "block_not_online": (
        "the block is not online",
        "memory block 32 is going_offline: no new holds may start in it",
        {"block": 32, "state": "going_offline"},
    ),
    "block_not_offline": (
        "the block is not offline",
        "memory block 32 is online",
        {"block": 32, "state": "online"},
    ),
    "multizone_block": (
        "the block spans two zones",
        "memory block 7 spans zones 0/DMA32 and 0/Normal and cannot be offlined",
        {"block": 7},
    ),
    "no_release_handler": (
        "the holder has no release webhook",
        "holder 'balloon0' has no release handler",
        {"holder": "balloon0"},
    ),
    "offline_failed": (
        "pages stayed held: the block stays online",
        "memory block 44 stays online: 1 hold was not released",
        {
            "report": {
                "block": 44,
                "state": "online",
                "released_pages": 0,
                "released_holds": 0,
                "webhook_calls": 1,
                "duration_ms": 12.5,
                "failures": [
                    {
                        "holder": "rdma0",
                        "pfn": 1441792,
                        "order": 0,
                        "reason": "release_failed",
                        "detail": "HTTP 500: pages pinned by DMA",
                    }
                ],
            }
        },
    ),
    "forbidden": (
        "the token may not do this",
        "only the admin or holder 'nic0' may do this",
        {},
    ),
    "release_failed": (
        "the holder refused",
        "holder 'rdma0': HTTP 500: pages pinned by DMA",
        {"holder": "rdma0"},
    ),
    "release_timeout": (
        "the holder did not answer in time",
        "holder 'gpu0': no answer within 10 s",
        {"holder": "gpu0"},
    ),
    "storage_unavailable": (
        "the change could not be saved",
        "the change was not saved: database or disk is full",
        {},
    ),
    "unauthorized": ("no or unknown token", "missing bearer token", {}),
    "method_not_allowed": ("wrong method", "Method Not Allowed", {}),
    "payload_too_large": (
        "the body is too large",
        "request body is over 8388608 bytes",
        {},
    ),
    "not_ready": ("starting or stopping", "the registry is starting or stopping", {}),
    "not_leader": (
        "a standby: ask the leader",
        "this registry is a standby",
        {"leader": "http://registry-a:8000"},
    ),
    "lease_expired": (
        "the holder's lease ran out",
        "holder 'nic0': its lease expired; keep it alive to hold pages",
        {"holder": "nic0"},
    ),
    "lease_not_expired": (
        "the holder is alive",
        "holder 'nic0' has a live lease; only an expired holder's holds are reclaimed",
        {"holder": "nic0"},
    ),
    "no_lease": (
        "the holder has no lease",
        "holder 'nic0' has no lease",
        {"holder": "nic0"},
    ),
    "events_compacted": (
        "those revisions are no longer kept",
        "revision 17 is older than the oldest revision kept (100018); read the state again"
        " and watch from its X-Pageholder-Revision",
        {"oldest_rev": 100018},
    ),
}
