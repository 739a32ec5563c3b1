"""What a running registry holds, as one line of canonical JSON; run.sh compares two.

    python3 registry_state.py URL[,URL...] TOKEN [BLOCK=STATE ...]

Prints the holders (name, release URL, holds, held pages), every hold and every block's
state, sorted, so that two snapshots are equal exactly when the state is. Each
BLOCK=STATE argument is also checked (exit 1 naming the difference). Standard library
only: it runs on the host, outside any venv, against the registry's published port.
Several URLs (a leader and its standbys): it reads from the first that answers a
standby's 503 ``not_leader`` or a refused connection with nothing else: the leader.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any


def get(opener: urllib.request.OpenerDirector, url: str, token: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with opener.open(request, timeout=30) as answer:
        return json.load(answer)


def snapshot(base: str, token: str) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    holders = get(opener, f"{base}/v1/holders", token)["items"]
    holds = get(opener, f"{base}/v1/pages?limit=10000", token)
    blocks = get(opener, f"{base}/v1/blocks?limit=1000", token)
    assert holds["next_cursor"] is None and blocks["next_cursor"] is None, "more than a page"
    return {
        "holders": sorted(
            (h["name"], h["release_url"], h["holds"], h["held_pages"]) for h in holders
        ),
        "holds": sorted((h["pfn"], h["order"], h["holder"], h["state"]) for h in holds["items"]),
        "blocks": {str(b["id"]): b["state"] for b in blocks["items"]},
    }


def leader_snapshot(bases: list[str], token: str) -> dict[str, Any]:
    """The snapshot of the first URL that answers and is not a standby."""
    for base in bases:
        try:
            return snapshot(base, token)
        except urllib.error.HTTPError as exc:
            if exc.code != 503 or base == bases[-1]:
                raise
        except urllib.error.URLError:  # refused: a registry that is gone
            if base == bases[-1]:
                raise
    raise AssertionError("unreachable")


def main(argv: list[str]) -> int:
    base, token, *expected = argv
    state = leader_snapshot([b.strip().rstrip("/") for b in base.split(",")], token)
    print(json.dumps(state, sort_keys=True))
    wrong = [
        f"block {block} is {state['blocks'].get(block)}, not {want}"
        for block, want in (item.split("=", 1) for item in expected)
        if state["blocks"].get(block) != want
    ]
    for line in wrong:
        print(line, file=sys.stderr)
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
