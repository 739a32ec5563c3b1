"""The client's public surface is curated, and it has one exception per problem code."""

from __future__ import annotations

import pageholder.client as client
from pageholder.client import (
    EXCEPTIONS_BY_CODE,
    ClientError,
    PageHolderError,
    TransportError,
    exception_for_code,
)
from pageholder.service.api.problems import STATUS
from pageholder.service.core import errors

EXPECTED = [
    "EXCEPTIONS_BY_CODE",
    "AsyncKeepalive",
    "AsyncPageHolderClient",
    "BatchResult",
    "Block",
    "BlockNotFound",
    "BlockNotOffline",
    "BlockNotOnline",
    "BlockPage",
    "ClientError",
    "Conflict",
    "ConnectError",
    "CrossesZone",
    "FieldError",
    "Forbidden",
    "Hold",
    "HoldPage",
    "HoldResult",
    "Holder",
    "HolderCreated",
    "HolderExists",
    "HolderHasHolds",
    "HolderNotFound",
    "InternalError",
    "InvalidRequest",
    "Keepalive",
    "KeepaliveFailure",
    "Lease",
    "LeaseExpired",
    "LeaseNotExpired",
    "MethodNotAllowed",
    "Misaligned",
    "MultizoneBlock",
    "NoLease",
    "NoReleaseHandler",
    "NotFound",
    "NotHead",
    "NotReady",
    "OfflineFailed",
    "OfflineFailure",
    "OfflineReport",
    "Page",
    "PageHeld",
    "PageHolderClient",
    "PageHolderError",
    "PageInfo",
    "PageNotHeld",
    "PageReleasing",
    "PayloadTooLarge",
    "PfnNotFound",
    "Reclaimed",
    "ReclaimedHold",
    "ReleaseFailed",
    "ReleaseReceiver",
    "ReleaseRequest",
    "ReleaseResult",
    "ReleaseTimeout",
    "Released",
    "Retry",
    "RunningReceiver",
    "StorageUnavailable",
    "Timeout",
    "TimeoutException",
    "TransportError",
    "Unauthorized",
    "UnexpectedResponse",
    "Zone",
    "exception_for_code",
    "serve_receiver",
]


def test_all_is_the_expected_sorted_list() -> None:
    assert client.__all__ == sorted(client.__all__)
    assert client.__all__ == sorted(EXPECTED)


def test_every_exported_member_exists_and_claims_its_package() -> None:
    for name in client.__all__:
        member = getattr(client, name)
        module = getattr(member, "__module__", None)
        if module is not None and name != "EXCEPTIONS_BY_CODE":
            assert module.startswith("pageholder.client"), (name, module)


def test_every_server_problem_code_has_its_own_class() -> None:
    assert set(EXCEPTIONS_BY_CODE) == set(STATUS), set(STATUS) ^ set(EXCEPTIONS_BY_CODE)
    classes = [EXCEPTIONS_BY_CODE[code] for code in STATUS]
    assert len(set(classes)) == len(classes), "two codes share a class"
    for code in STATUS:
        cls = exception_for_code(code)
        assert cls is EXCEPTIONS_BY_CODE[code]
        assert issubclass(cls, PageHolderError) and cls is not PageHolderError
        assert getattr(client, cls.__name__) is cls, f"{cls.__name__} is not exported"
        # Named in CamelCase after the code, as the server's own classes are.
        assert cls.__name__ == "".join(part.capitalize() for part in code.split("_")), code


def test_the_client_tree_follows_the_servers() -> None:
    """A core error's client class subclasses the client class of its core parent."""
    for core in errors.all_error_classes()[1:]:
        parent = core.__mro__[1]
        assert issubclass(core, errors.PageHolderError) and issubclass(
            parent, errors.PageHolderError
        )
        ours = exception_for_code(core.code)
        assert ours.__name__ == core.__name__
        if parent is not errors.PageHolderError:
            assert issubclass(ours, exception_for_code(parent.code)), core.__name__


def test_unknown_codes_fall_back_by_status() -> None:
    assert exception_for_code("brand_new", 409) is client.Conflict
    assert exception_for_code("brand_new", 404) is client.NotFound
    assert exception_for_code("brand_new", 422) is client.InvalidRequest
    assert exception_for_code("brand_new", 418) is PageHolderError
    assert exception_for_code(None) is PageHolderError
    assert issubclass(PageHolderError, ClientError) and issubclass(TransportError, ClientError)
    assert not issubclass(TransportError, PageHolderError)
