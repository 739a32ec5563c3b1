"""Where the event loop stalls, measured inside a server (``BENCH_LAG=FILE``).

``install(path)`` starts, on the running loop, a heartbeat (a task that notes the time
every millisecond) and a watchdog thread that looks every 2 ms: while the heartbeat is
older than ``STALL_S``, it samples the main thread's stack and charges the time since
its last look to that stack (the innermost frames of ``pageholder``, or the innermost
frames at all). ``dump()`` (what ``install`` returns) writes ``{"stalls": [[start_s,
ms], ...], "turns": [[start_s, wall_ms, cpu_ms], ...], "stacks": {stack: cpu_ms}}`` to
``path``, and every garbage collection over 2 ms (``collections``: start, generation,
ms, objects collected). A stack is charged the CPU time the loop's thread spent (not time it waited
for a core or the GIL); ``turns`` are the loop's longest turns by that CPU time: on a
busy machine, wall-clock stalls are mostly waiting, and this tells the two apart. The
watchdog needs the GIL to look: a C call that holds it (a big ``json.loads``) is
charged to whatever runs after it.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import sys
import threading
import time
import traceback
from collections.abc import Callable

STALL_S = 0.02
#: a turn of the loop noted in ``turns`` (with the CPU the loop's thread spent in it)
TURN_S = 0.005
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
    assert main is not None
    main_cpu = time.pthread_getcpuclockid(main)
    stacks: collections.Counter[str] = collections.Counter()
    stalls: list[list[float]] = []
    turns: list[list[float]] = []  # [start_s, wall ms, main thread's CPU ms] of long turns
    # [start_s, generation, ms, objects collected] of collections over 2 ms
    collections_: list[list[float]] = []
    began = time.perf_counter()
    collecting = [0.0]

    def collected(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[0] = time.perf_counter()
        elif (spent := time.perf_counter() - collecting[0]) > 0.002:
            collections_.append(
                [collecting[0] - began, info["generation"], spent * 1000, info["collected"]]
            )

    gc.callbacks.append(collected)

    async def heart() -> None:
        cpu = time.thread_time()
        while True:
            now, now_cpu = time.perf_counter(), time.thread_time()
            if now - beat[0] > TURN_S:
                turns.append([beat[0] - began, (now - beat[0]) * 1000, (now_cpu - cpu) * 1000])
            beat[0], cpu = now, now_cpu
            await asyncio.sleep(0.001)

    def watchdog() -> None:
        cpu = time.clock_gettime(main_cpu)
        stalled_since: float | None = None
        while True:
            time.sleep(PERIOD_S)
            now, now_cpu = time.perf_counter(), time.clock_gettime(main_cpu)
            if now - beat[0] > STALL_S:
                if stalled_since is None:
                    stalled_since = beat[0]
                frame = sys._current_frames().get(main)  # noqa: SLF001
                if frame is not None:  # charged what the loop's thread ran, not waited
                    stacks[_key(frame)] += (now_cpu - cpu) * 1000
                del frame  # a frame kept here would keep its locals (a batch's lists) alive
            elif stalled_since is not None:
                stalls.append([stalled_since - began, (beat[0] - stalled_since) * 1000])
                stalled_since = None
            cpu = now_cpu

    def dump() -> None:
        longest = sorted(turns, key=lambda turn: -turn[2])[:40]
        with open(path, "w") as out:
            json.dump(
                {
                    "stalls": stalls,
                    "turns": longest,
                    "collections": collections_,
                    "stacks": dict(stacks.most_common(60)),
                },
                out,
                indent=1,
            )

    asyncio.get_running_loop().create_task(heart())
    threading.Thread(target=watchdog, name="bench-lag", daemon=True).start()
    return dump
