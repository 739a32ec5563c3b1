"""``pageholder serve`` logs every request to stdout, as uvicorn's access log does."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from .servers import running_server

pytestmark = pytest.mark.integration

ADMIN_TOKEN = "access-log-test-admin-token-0123456789"
#: The longest a line may wait: the flush interval, with a wide margin for a busy machine.
WAIT_S = 10.0


def test_serve_logs_each_request_soon_and_all_of_them_at_shutdown(tmp_path: Path) -> None:
    with running_server(tmp_path, admin_token=ADMIN_TOKEN) as server:
        auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=server.url, trust_env=False, timeout=5) as http:
            assert http.get("/v1/pages/1048576", headers=auth).status_code == 200
            assert http.get("/v1/pages/1048576?x=1").status_code == 401
        line = re.compile(
            r'^INFO: +127\.0\.0\.1:\d+ - "GET /v1/pages/1048576 HTTP/1\.1" 200 OK$', re.M
        )
        refused = '"GET /v1/pages/1048576?x=1 HTTP/1.1" 401 Unauthorized'

        def both_logged() -> bool:
            # each line is flushed within the interval, not necessarily with the other
            printed = server.stdout()
            return bool(line.search(printed)) and refused in printed

        deadline = time.monotonic() + WAIT_S
        while not both_logged() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert both_logged(), server.output()
        with httpx.Client(base_url=server.url, trust_env=False, timeout=5) as http:
            assert http.get("/healthz").status_code == 200
    # Stopped (SIGTERM): the last line was written before the process ended.
    assert '"GET /healthz HTTP/1.1" 200 OK' in server.stdout(), server.output()


def test_log_level_warning_logs_no_requests(tmp_path: Path) -> None:
    with running_server(
        tmp_path, admin_token=ADMIN_TOKEN, args=["--log-level", "warning"]
    ) as server:
        with httpx.Client(base_url=server.url, trust_env=False, timeout=5) as http:
            assert http.get("/healthz").status_code == 200
    assert "GET /healthz" not in server.stdout(), server.output()
