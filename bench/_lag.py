"""Where the event loop stalls, measured inside a server (``BENCH_LAG=FILE``).

``install(path)`` starts, on the running loop, a heartbeat (a task that notes the time
every millisecond) and a watchdog thread that looks every 2 ms: while the heartbeat is
older than ``STALL_S``, it samples the main thread's stack and charges the time since
its last look to that stack (the innermost frames of ``pageholder``, or the innermost
frames at all). ``dump()`` (what ``install`` returns) writes ``{"stalls": [[start_s,
ms], ...], "stacks": {stack: ms}}`` to ``path``. The watchdog needs the GIL to look:
a C call that holds it (a big ``json.loads``) is charged to whatever runs after it.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable

STALL_S = 0.02
PERIOD_S = 0.002
DEPTH = 4


def _key(frame: object) -> str:
    stack = traceback.extract_stack(frame)  # type: ignore[arg-type]
    ours = [f for f in stack if "/service/" in f.filename or "pageholder" in f.filename]
    picked = (ours or stack)[-DEPTH:]
    return " < ".join(f"{f.name}:{f.lineno}" for f in reversed(picked))


def install(path: str) -> Callable[[], None]:
    beat = [time.perf_counter()]
    main = threading.main_thread().ident
    stacks: collections.Counter[str] = collections.Counter()
    stalls: list[list[float]] = []
    began = time.perf_counter()

    async def heart() -> None:
        while True:
            beat[0] = time.perf_counter()
            await asyncio.sleep(0.001)

    def watchdog() -> None:
        last = time.perf_counter()
        stalled_since: float | None = None
        while True:
            time.sleep(PERIOD_S)
            now = time.perf_counter()
            if now - beat[0] > STALL_S:
                if stalled_since is None:
                    stalled_since = beat[0]
                frame = sys._current_frames().get(main)  # noqa: SLF001
                if frame is not None:
                    stacks[_key(frame)] += (now - last) * 1000
            elif stalled_since is not None:
                stalls.append([stalled_since - began, (beat[0] - stalled_since) * 1000])
                stalled_since = None
            last = now

    def dump() -> None:
        with open(path, "w") as out:
            json.dump({"stalls": stalls, "stacks": dict(stacks.most_common(60))}, out, indent=1)

    asyncio.get_running_loop().create_task(heart())
    threading.Thread(target=watchdog, name="bench-lag", daemon=True).start()
    return dump
