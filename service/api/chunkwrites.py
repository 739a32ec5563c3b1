"""An event stream's chunks written straight to its connection, without a copy.

A stream sends one chunk per subscriber per ring. Through the ASGI ``send`` of
uvicorn's httptools protocol, each one is framed as an HTTP/1.1 chunk by joining its
size line, the chunk and a CRLF into a new bytes object: a copy of every chunk for
every subscriber (100 subscribers, 37 KB a ring, 40 rings a second: 150 MB/s copied),
under a coroutine and the checks around it. The chunk itself is one bytes object per
class per ring (``EventLog.shared_chunk``).

The protocol ``pageholder serve`` runs (``deadlines.ReadDeadlines`` is a
``ChunkWrites``) puts a ``ChunkWriter`` for each request in
``scope["extensions"][CHUNKS]``. It writes a body as one chunk with
``transport.writelines`` (uvloop: one ``writev``, nothing joined) while the response is
a started, unfinished chunked one, the connection open, and nothing waits to be sent
(writing not paused, nothing buffered); otherwise it says False and the caller uses
the ASGI ``send``, which waits for the buffer to drain. So the bytes on the wire are
the ones ``send`` would have written, in the same order: while anything is buffered,
every write goes through ``send``, behind it. Under any other server there is no
writer, and every chunk goes through ``send``.
"""

from __future__ import annotations

from typing import Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

#: The scope extension a request's ``ChunkWriter`` is under.
CHUNKS: Final = "pageholder.chunks"


class ChunkWriter:
    """Writes a body chunk of one request's response straight to the connection."""

    __slots__ = ("_cycle",)

    def __init__(self, cycle: RequestResponseCycle) -> None:
        self._cycle = cycle

    def __call__(self, body: bytes) -> bool:
        """Written as the ASGI ``send`` would (``{"type": "http.response.body", "body":
        body, "more_body": True}``), or False: use ``send``. Cost: O(1), no copy."""
        cycle = self._cycle
        transport = cycle.transport
        if (
            not body
            or not cycle.response_started
            or cycle.response_complete
            or cycle.chunked_encoding is not True
            or cycle.disconnected
            or cycle.flow.write_paused
            or transport.is_closing()
            or transport.get_write_buffer_size()
        ):
            return False
        transport.writelines((b"%x\r\n" % len(body), body, b"\r\n"))
        return True


class ChunkWrites(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a ``ChunkWriter`` in every request's scope."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:  # not an upgrade
            extensions: dict[str, object] = self.scope.setdefault("extensions", {})  # type: ignore[assignment]
            extensions[CHUNKS] = ChunkWriter(cycle)
