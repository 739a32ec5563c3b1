"""What the storage layer refuses with."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot be opened (corrupt, newer schema, unreadable, in use by another
    server): refuse to start, in one line."""
