"""The web console in a real browser: headless Chromium against a real ``serve``.

Each scenario is what an operator does: open /ui, give the token, look at the map,
watch it change, click a block, offline it, read the report. Screenshots go to
``$PAGEHOLDER_SCREENSHOTS`` when it is set (``make screenshots`` sets it to docs/).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from . import browser
from .servers import Server, pageholder_command, running_server, server_env

ADMIN_TOKEN = "console-test-admin-token-0123456789"
NORMAL = 1 << 20
BLOCK_PAGES = 32768
WHY_NOT = browser.available()

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(WHY_NOT is not None, reason=f"console in a browser: {WHY_NOT}"),
]

HELD_RGB = (47, 143, 78)  # COLOURS.held in console.js
ONLINE_RGB = (207, 232, 213)


def block_pfn(block: int) -> int:
    return block * BLOCK_PAGES


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)


def screenshot(driver: Any, name: str) -> None:
    where = os.environ.get("PAGEHOLDER_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(where) / name))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("console"), admin_token=ADMIN_TOKEN) as running:
        yield running


@pytest.fixture(scope="module")
def admin(server: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=server.url, headers=headers, trust_env=False, timeout=30) as c:
        yield c


@pytest.fixture
def driver() -> Iterator[Any]:
    with browser.chromium() as d:
        yield d


def open_console(driver: Any, server: Server, token: str = ADMIN_TOKEN) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{server.url}/ui")
    field = driver.find_element(By.ID, "token")
    field.send_keys(token)
    driver.find_element(By.ID, "token-save").click()


def blocks_loaded(driver: Any) -> int:
    count: int = driver.execute_script(
        "const s = window.pageholderConsole; return s && !document.getElementById('main').hidden"
        " ? s.blocks.size : 0"
    )
    return count


def cell_rgb(driver: Any, block: int, dy: int) -> tuple[int, int, int]:
    """The colour of block's cell at ``dy`` pixels above its bottom edge."""
    rgb = driver.execute_script(
        """
        const s = window.pageholderConsole, at = s.positions.get(arguments[0]);
        const canvas = document.getElementById('map'), ratio = window.devicePixelRatio || 1;
        const y = at.y + s.cell - 2 - arguments[1];
        const px = canvas.getContext('2d').getImageData(Math.floor((at.x + 1) * ratio),
            Math.floor(y * ratio), 1, 1).data;
        return [px[0], px[1], px[2]];
        """,
        block,
        dy,
    )
    return (rgb[0], rgb[1], rgb[2])


def test_the_map_shows_every_block_after_the_admin_token(driver: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By

    driver.get(f"{server.url}/ui")
    assert "token" in driver.find_element(By.ID, "message").text  # it asks first
    open_console(driver, server)
    assert wait_for(lambda: blocks_loaded(driver), 20, "the map") == 128  # the default layout
    assert driver.find_element(By.ID, "who").text == "admin"
    assert cell_rgb(driver, 40, 0) == ONLINE_RGB  # nothing held yet


def test_a_hold_set_through_the_api_repaints_its_cell_without_a_reload(
    driver: Any, server: Server, admin: httpx.Client
) -> None:
    open_console(driver, server)
    wait_for(lambda: blocks_loaded(driver), 20, "the map")
    created = admin.post("/v1/holders", json={"name": "live0"})
    assert created.status_code == 201, created.text
    marker = driver.execute_script("return document.body.dataset.painted")
    response = admin.post(
        "/v1/holds/batch-set",
        json={"holder": "live0", "ranges": [{"start_pfn": block_pfn(45), "nr_pages": BLOCK_PAGES}]},
    )
    assert response.status_code == 200, response.text
    wait_for(lambda: cell_rgb(driver, 45, 0) == HELD_RGB, 10, "block 45's cell to fill")
    assert driver.execute_script("return document.body.dataset.painted") != marker
    held = driver.execute_script("return window.pageholderConsole.blocks.get(45).held_pages")
    assert held == BLOCK_PAGES


def test_offline_from_the_panel_reports_the_refusing_holder(
    driver: Any, server: Server, admin: httpx.Client, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    # a real subsystem process that refuses to give its pages back
    log = (tmp_path / "simulate.out").open("wb")
    simulate = subprocess.Popen(
        [
            *pageholder_command(),
            "simulate",
            "--registry",
            server.url,
            "--subsystem",
            "rdma0:refusing:runs:64:44",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=server_env(None) | {"PAGEHOLDER_TOKEN": ADMIN_TOKEN},
    )
    try:
        wait_for(
            lambda: admin.get("/v1/blocks/44").json()["holds"] > 0, 30, "rdma0 to hold block 44"
        )
        open_console(driver, server)
        wait_for(lambda: blocks_loaded(driver), 20, "the map")
        screenshot(driver, "console-map.png")
        driver.execute_script("document.getElementById('deadline').value = '5'")
        at = driver.execute_script("return window.pageholderConsole.positions.get(44)")
        canvas = driver.find_element(By.ID, "map")
        from selenium.webdriver.common.action_chains import ActionChains

        size = canvas.size
        ActionChains(driver).move_to_element_with_offset(
            canvas, at["x"] + 2 - size["width"] // 2, at["y"] + 2 - size["height"] // 2
        ).click().perform()
        wait_for(
            lambda: driver.find_element(By.ID, "panel-title").text == "Block 44", 10, "the panel"
        )
        wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#holds tbody tr"), 10, "holds")
        driver.find_element(By.ID, "offline").click()
        title = wait_for(
            lambda: "stays online" in (t := driver.find_element(By.ID, "report-title").text) and t,
            30,
            "the offline report",
        )
        assert "64 holds not released" in title or "holds not released" in title
        rows = driver.find_elements(By.CSS_SELECTOR, "#report-table tbody tr")
        assert rows, "the report lists the failures"
        cells = [c.text for c in rows[0].find_elements(By.TAG_NAME, "td")]
        assert cells[0] == "rdma0" and cells[3] == "release_failed"
        assert "pinned by DMA" in cells[4]
        screenshot(driver, "console-offline-report.png")
    finally:
        simulate.terminate()
        simulate.wait(10)
        log.close()


def test_a_wrong_token_gets_a_clear_message(driver: Any, server: Server) -> None:
    from selenium.webdriver.common.by import By

    open_console(driver, server, token="not-a-token-at-all")
    message = wait_for(
        lambda: (m := driver.find_element(By.ID, "message")).is_displayed() and m.text,
        10,
        "the refusal",
    )
    assert "refused this token" in message and "unauthorized" in message
    assert not driver.find_element(By.ID, "main").is_displayed()


def test_a_holder_token_sees_a_read_only_console(
    driver: Any, server: Server, admin: httpx.Client
) -> None:
    from selenium.webdriver.common.by import By

    created = admin.post("/v1/holders", json={"name": "viewer0"})
    assert created.status_code == 201, created.text
    open_console(driver, server, token=created.json()["token"])
    wait_for(lambda: blocks_loaded(driver), 20, "the map")
    assert "viewer0" in driver.find_element(By.ID, "who").text
    assert "readonly" in driver.find_element(By.TAG_NAME, "body").get_attribute("class")
    assert not driver.find_element(By.ID, "offline").is_displayed()


def test_holder_controlled_text_is_shown_as_text(
    driver: Any, server: Server, admin: httpx.Client
) -> None:
    from selenium.webdriver.common.by import By

    evil = "<img src=x onerror=\"document.title='pwned'\">"
    created = admin.post("/v1/holders", json={"name": "evil0", "description": evil})
    assert created.status_code == 201, created.text
    open_console(driver, server)
    wait_for(lambda: blocks_loaded(driver), 20, "the map")
    names = [td.text for td in driver.find_elements(By.CSS_SELECTOR, "#holders tbody td")]
    assert "evil0" in names
    assert driver.title == "pageholder console"
    page = httpx.get(f"{server.url}/ui", trust_env=False)
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_an_orphaned_holder_shows_as_such(driver: Any, server: Server, admin: httpx.Client) -> None:
    from selenium.webdriver.common.by import By

    created = admin.post("/v1/holders", json={"name": "gone0", "lease_ttl_s": 1})
    assert created.status_code == 201, created.text
    held = admin.put(f"/v1/pages/{block_pfn(50)}/hold", json={"holder": "gone0", "order": 9})
    assert held.status_code == 201, held.text
    # no keepalive: after a second its lease runs out and its holds read orphaned
    wait_for(
        lambda: admin.get(f"/v1/pages/{block_pfn(50)}").json()["state"] == "orphaned",
        20,
        "gone0's hold to turn orphaned",
    )
    open_console(driver, server)
    wait_for(lambda: blocks_loaded(driver), 20, "the map")
    rows = driver.find_elements(By.CSS_SELECTOR, "#holders tbody tr")
    cells = next(
        [td.text for td in r.find_elements(By.TAG_NAME, "td")]
        for r in rows
        if r.find_element(By.TAG_NAME, "td").text == "gone0"
    )
    assert cells[2].startswith("expired")
    orphaned = driver.execute_script(
        "return window.pageholderConsole.blocks.get(50).orphaned_pages"
    )
    assert orphaned == 512
    # the purple corner: the cell's top-left pixel
    rgb = driver.execute_script(
        """
        const s = window.pageholderConsole, at = s.positions.get(50);
        const ratio = window.devicePixelRatio || 1;
        const x = Math.floor((at.x + 1) * ratio), y = Math.floor((at.y + 1) * ratio);
        const px = document.getElementById('map').getContext('2d').getImageData(x, y, 1, 1).data;
        return [px[0], px[1], px[2]];
        """
    )
    assert tuple(rgb) == (142, 68, 173)  # COLOURS.orphaned in console.js
