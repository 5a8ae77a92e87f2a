"""htsget errors (htsget v1.3 "Errors"): each has its error type and HTTP status, and becomes
`{"htsget": {"error": ..., "message": ...}}`."""

from __future__ import annotations


class HtsgetError(Exception):
    error = "InvalidInput"
    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"htsget": {"error": self.error, "message": self.message}}


class InvalidAuthentication(HtsgetError):
    error, status = "InvalidAuthentication", 401


class PermissionDenied(HtsgetError):
    error, status = "PermissionDenied", 403


class NotFound(HtsgetError):
    error, status = "NotFound", 404


class PayloadTooLarge(HtsgetError):
    error, status = "PayloadTooLarge", 413


class UnsupportedFormat(HtsgetError):
    error, status = "UnsupportedFormat", 400


class InvalidInput(HtsgetError):
    error, status = "InvalidInput", 400


class InvalidRange(HtsgetError):
    error, status = "InvalidRange", 400


class ServerError(HtsgetError):
    """The node's fault (5xx; not one of the spec's client error types)."""

    error, status = "InternalError", 500


#: HTTP status -> error type, for errors raised outside htsget's own code (routing, 500s).
ERROR_FOR_STATUS = {400: "InvalidInput", 401: "InvalidAuthentication", 403: "PermissionDenied",
                    404: "NotFound", 405: "InvalidInput", 413: "PayloadTooLarge"}
