"""The console at scale: how long headless Chromium takes to show the whole memory map,
and to repaint a change, on this host's layout and on a 4 TiB one (32,768 blocks).

    python -m bench console

For each layout a real ``pageholder serve`` (in memory) holds a few thousand pages in
scattered blocks; Chromium opens /ui with the admin token already in the tab's
sessionStorage, five times. Measured in the page (performance.now(), from navigation
start): the first full map (``firstPaintMs``: page, script, four API reads and the
canvas paint), the whole-map paint alone, and a change: a hold set through the API,
timed from the API's answer to the moment its cell was repainted (``/v1/events`` when
the registry has it, else the console's 2 s polling), and the repaint itself. The
baseline, measured in the same run, is the same browser loading /docs (Swagger UI).
Targets (issue 16): first map < 1 s, a change repainted < 100 ms after it arrives.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.integration import browser
from tests.integration.servers import running_server

from ._report import header, write_section

TOKEN = "bench-console-admin-token-0123456789"
ROUNDS = 5
TIB4 = """\
block_size = 134217728
[[zone]]
node = 0
name = "DMA"
start_pfn = 1
spanned_pages = 4095
[[zone]]
node = 0
name = "DMA32"
start_pfn = 4096
spanned_pages = 1044480
[[zone]]
node = 0
name = "Normal"
start_pfn = 1048576
spanned_pages = 1072693248
"""


def _first_map(driver: Any, url: str) -> dict[str, float]:
    driver.get(f"{url}/ui")
    driver.execute_script(f"sessionStorage.setItem('pageholder.token', '{TOKEN}')")
    driver.get(f"{url}/ui")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        timings = driver.execute_script(
            "const s = window.pageholderConsole; return s && s.timings.firstPaintMs !== undefined"
            " ? {first: s.timings.firstPaintMs, paint: s.lastPaintMs, blocks: s.blocks.size} : null"
        )
        if timings:
            return dict(timings)
        time.sleep(0.02)
    raise TimeoutError("the console never painted its map")


def _change(driver: Any, http: httpx.Client, pfn: int) -> dict[str, float]:
    """Set a hold; how long until its cell was repainted, and the repaint's own cost."""
    before = driver.execute_script("return document.body.dataset.painted")
    answered = time.time() * 1000
    response = http.put(f"/v1/pages/{pfn}/hold", json={"holder": "bench0"})
    response.raise_for_status()
    answered = (answered + time.time() * 1000) / 2
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        painted = driver.execute_script("return document.body.dataset.painted")
        if painted != before:
            cost = driver.execute_script("return window.pageholderConsole.lastPaintMs")
            return {"visible": float(painted) - answered, "repaint": float(cost)}
        time.sleep(0.005)
    raise TimeoutError("the change never reached the map")


def _docs(driver: Any, url: str) -> float:
    driver.get(f"{url}/docs")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done = driver.execute_script(
            "return document.querySelector('.opblock') ? performance.now() : null"
        )
        if done:
            return float(done)
        time.sleep(0.02)
    raise TimeoutError("/docs never rendered")


def _measure(layout: str, workdir: Path) -> dict[str, Any]:
    args = ["--layout", layout]
    with (
        running_server(workdir, admin_token=TOKEN, args=args) as server,
        httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
            trust_env=False,
        ) as http,
    ):
        http.post("/v1/holders", json={"name": "bench0"}).raise_for_status()
        blocks = http.get("/v1/blocks", params={"limit": 1000}).json()["items"]
        normal = [b for b in blocks if b["zone"].endswith("Normal")] or blocks
        pages = [{"pfn": b["start_pfn"] + i, "order": 0} for b in normal[::7] for i in range(64)]
        http.post("/v1/holds/batch-set", json={"holder": "bench0", "pages": pages[:60000]})
        free = [b for b in normal if b["holds"] == 0]
        firsts, paints, visible, repaints, docs = [], [], [], [], []
        with browser.chromium() as driver:
            for round_ in range(ROUNDS):
                docs.append(_docs(driver, server.url))
                measured = _first_map(driver, server.url)
                firsts.append(measured["first"])
                paints.append(measured["paint"])
                change = _change(driver, http, free[round_]["start_pfn"] + 100)
                visible.append(change["visible"])
                repaints.append(change["repaint"])
        with http.stream("GET", "/v1/events", headers={"Accept": "text/event-stream"}) as events:
            live = "events" if events.status_code == 200 else "polling (no /v1/events)"
    return {
        "blocks": int(measured["blocks"]),
        "first": statistics.median(firsts),
        "paint": statistics.median(paints),
        "visible": statistics.median(visible),
        "visible_max": max(visible),
        "repaint": statistics.median(repaints),
        "docs": statistics.median(docs),
        "live": live,
    }


def main() -> None:
    why_not = browser.available()
    if why_not:
        print(f"bench console: skipped: {why_not}")
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tib4 = Path(tmp) / "4tib.toml"
        tib4.write_text(TIB4)
        results = {
            "this host (--layout host)": _measure("host", Path(tmp) / "host"),
            "4 TiB (32,768 blocks of 128 MiB)": _measure(str(tib4), Path(tmp) / "tib4"),
        }
    rows = [
        "| layout | blocks | first map (target < 1000 ms) | whole-map paint"
        " | a change visible after the API's answer | its repaint (target < 100 ms)"
        " | live by | baseline: /docs rendered | first map / baseline |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for name, r in results.items():
        rows.append(
            f"| {name} | {r['blocks']:,} | {r['first']:.0f} ms | {r['paint']:.1f} ms |"
            f" {r['visible']:.0f} ms (max {r['visible_max']:.0f}) | {r['repaint']:.2f} ms |"
            f" {r['live']} | {r['docs']:.0f} ms | {r['first'] / r['docs']:.2f}x |"
        )
    text = (
        header(
            "Console: first map and repaint in headless Chromium",
            "python -m bench console",
            time.monotonic() - started,
            f", Chromium {_chromium_version()}, medians of {ROUNDS}",
        )
        + "\n".join(rows)
        + "\n"
    )
    print(text)
    write_section("Console: first map and repaint in headless Chromium", text)


def _chromium_version() -> str:
    done = subprocess.run([browser.CHROMIUM, "--version"], capture_output=True, text=True)
    return done.stdout.strip().removeprefix("Chromium ").split()[0] if done.stdout else "?"


if __name__ == "__main__":
    sys.exit(main())
