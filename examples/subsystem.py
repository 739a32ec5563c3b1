"""A subsystem that holds pages and gives them back when the registry asks."""

import asyncio
import os

from pageholder.client import AsyncPageHolderClient, ReleaseReceiver, ReleaseRequest, serve_receiver


def on_release(request: ReleaseRequest) -> None:  # return ReleaseResult.refuse("why") to say no
    for page in request.pages:
        print(f"giving back pfn {page.pfn} order {page.order} ({request.reason})", flush=True)


async def main() -> None:
    url, token = os.environ["PAGEHOLDER_URL"], os.environ["PAGEHOLDER_TOKEN"]
    async with AsyncPageHolderClient(url, token) as admin:  # registering a holder needs the admin
        me = await admin.create_holder("nic0", description="example subsystem")
        receiver = await serve_receiver(ReleaseReceiver(me.webhook_secret, on_release))
        await admin.update_holder("nic0", release_url=receiver.url)
    async with AsyncPageHolderClient(url, me.token) as client:  # from here on, as nic0
        await client.hold(1048576, order=9)
        print("holding 512 pages at pfn 1048576", flush=True)
        await asyncio.Event().wait()  # answer release calls until stopped


asyncio.run(main())
