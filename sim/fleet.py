"""A scenario run against a registry: every subsystem registered, serving and holding."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress

from pageholder.client import (
    AsyncPageHolderClient,
    Block,
    BlockNotFound,
    ClientError,
    HolderCreated,
    HolderExists,
    KeepaliveFailure,
    ReleaseReceiver,
    serve_receiver,
)

from .behaviours import Subsystem, log
from .planning import plan_holds
from .scenario import Scenario, ScenarioError, SubsystemSpec


class SimulatedFleet:
    """Runs a ``Scenario`` against a registry: registers every subsystem, serves its
    release handler on ``listen_host`` and holds its pages; ``stop()`` (or leaving the
    ``async with``) stops the handlers. ``client`` needs the admin token.

    Holders stay registered after ``stop()`` (a stopped subsystem that never gave its
    pages back) unless ``cleanup`` is true: then they are deleted with their holds.
    """

    def __init__(
        self,
        client: AsyncPageHolderClient,
        scenario: Scenario,
        listen_host: str = "127.0.0.1",
        advertise_host: str | None = None,
        *,
        cleanup: bool = False,
    ) -> None:
        self.client = client
        self.scenario = scenario
        self.listen_host = listen_host
        self.advertise_host = advertise_host or listen_host
        if advertise_host is None and _unspecified(listen_host):
            raise ScenarioError(
                f"advertise-host: needed when listening on {listen_host} "
                "(the registry must be told an address it can reach)"
            )
        self.cleanup = cleanup
        self.subsystems: dict[str, Subsystem] = {
            spec.name: Subsystem(spec) for spec in scenario.subsystems
        }
        self.blocks: dict[int, Block] = {}

    async def __aenter__(self) -> SimulatedFleet:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def held_pages(self) -> int:
        return sum(s.held_pages for s in self.subsystems.values())

    async def start(self) -> None:
        """Register, serve and hold, subsystem by subsystem; on failure undo it all."""
        try:
            await self._load_blocks()
            plans = plan_holds(self.scenario.subsystems, self.blocks)
            for subsystem in self.subsystems.values():
                subsystem.plan = plans[subsystem.name]
                await self._register(subsystem)
            for subsystem in self.subsystems.values():
                await self._hold(subsystem)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every release handler; with ``cleanup``, delete the holders. Idempotent."""
        for subsystem in self.subsystems.values():
            if subsystem.keepalive is not None:
                await subsystem.keepalive.stop()
                subsystem.keepalive = None
        closing = []
        for subsystem in self.subsystems.values():
            if subsystem.running is not None:
                closing.append(subsystem.running.close())
                subsystem.running = None
        await asyncio.gather(*closing)
        if self.cleanup:
            for subsystem in self.subsystems.values():
                if subsystem.holder is not None:
                    with contextlib.suppress(ClientError):
                        await self.client.delete_holder(subsystem.name, force=True)
                    subsystem.holder = None

    async def _load_blocks(self) -> None:
        for spec in self.scenario.subsystems:
            for block_id in spec.unique_blocks:
                if block_id in self.blocks:
                    continue
                try:
                    block = await self.client.get_block(block_id)
                except BlockNotFound:
                    raise ScenarioError(
                        f"subsystem {spec.name}: blocks: block {block_id} is not in the "
                        "registry's memory layout"
                    ) from None
                if block.state != "online" and spec.pattern != "huge18":
                    raise ScenarioError(
                        f"subsystem {spec.name}: blocks: block {block_id} is {block.state}, "
                        f"not online (pageholder online {block_id})"
                    )
                self.blocks[block_id] = block

    async def _register(self, subsystem: Subsystem) -> None:
        spec = subsystem.spec
        description = spec.description or f"simulated: {spec.describe()}"
        try:
            created = await self._create(spec, description)
        except HolderExists:
            # The webhook secret is shown only at creation: start over with a new holder.
            log.info("%s: holder existed (a restart?): deleted with its holds", spec.name)
            await self.client.delete_holder(spec.name, force=True)
            created = await self._create(spec, description)
        subsystem.holder = created
        leased = spec.lease_ttl_s is not None
        if spec.behaviour == "no_handler":
            if leased:  # no receiver to do it: the client keeps the lease alive itself
                subsystem.keepalive = self.client.keep_alive(spec.name, on_failure=_failed)
            return
        receiver = ReleaseReceiver(
            created.webhook_secret,
            subsystem.on_release,
            registry=self.client if leased else None,
            holder=spec.name if leased else None,
            on_keepalive_failure=_failed,
        )
        try:
            subsystem.running = await serve_receiver(receiver, self.listen_host, spec.port)
        except OSError as exc:
            raise ScenarioError(
                f"subsystem {spec.name}: port: cannot listen on "
                f"{_netloc(self.listen_host)}:{spec.port}: {exc.strerror or exc}"
            ) from None
        url = f"http://{_netloc(self.advertise_host)}:{subsystem.running.port}/"
        holder = await self.client.update_holder(spec.name, release_url=url)
        subsystem.holder = dataclasses.replace(created, release_url=holder.release_url)

    async def _create(self, spec: SubsystemSpec, description: str) -> HolderCreated:
        return await self.client.create_holder(
            spec.name,
            timeout_s=spec.timeout_s,
            description=description,
            lease_ttl_s=spec.lease_ttl_s,
            on_expiry=spec.on_expiry if spec.lease_ttl_s is not None else None,
        )

    async def _hold(self, subsystem: Subsystem) -> None:
        plan = subsystem.plan
        results = await self.client.batch_set(subsystem.name, pages=plan.pages, ranges=plan.ranges)
        for result in results:
            if result.status == "error":
                subsystem.refused.append(result)
            else:
                subsystem.held[result.pfn] = result.order
        if subsystem.refused:
            codes: dict[str, int] = {}
            for result in subsystem.refused:
                codes[result.code or "error"] = codes.get(result.code or "error", 0) + 1
            log.warning(
                "%s: %d of %d holds refused by the registry (%s)",
                subsystem.name,
                len(subsystem.refused),
                len(results),
                ", ".join(f"{code} x{n}" for code, n in codes.items()),
            )


def _failed(failure: KeepaliveFailure) -> None:
    log.warning(
        "%s: keepalive failed (%d in a row): %s", failure.holder, failure.failures, failure.error
    )


def _unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return host == ""


def _netloc(host: str) -> str:
    return f"[{host}]" if ":" in host else host
