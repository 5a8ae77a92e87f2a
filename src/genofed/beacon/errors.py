"""Errors that become a Beacon error envelope (`beaconErrorResponse`) with a 4xx status."""

from __future__ import annotations


class BeaconRequestError(Exception):
    """A request the Beacon cannot answer; `status` is the HTTP status (always 4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class UnsupportedQueryError(BeaconRequestError):
    """A valid Beacon query this node cannot answer (e.g. geneId without a gene table)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 400)


class NotFoundError(BeaconRequestError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 404)


class BudgetExceededError(BeaconRequestError):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, 429)
        self.retry_after = retry_after


class UnauthorizedError(BeaconRequestError):
    """A bearer token was presented but is not acceptable."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message, status)


class ForbiddenError(BeaconRequestError):
    """The caller is known but may not have what they asked for."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 403)
