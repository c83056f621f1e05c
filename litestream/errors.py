"""One exception root for litestream; protocol errors carry their code from the spec.

protocol-v1: Error codes. The mapping from error to close code lives here and nowhere else.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """The error codes of protocol-v1, section "Server to client"."""

    BAD_MESSAGE = "bad_message"
    INVALID_PARAM = "invalid_param"
    INVALID_VOICE = "invalid_voice"
    TEXT_TOO_LONG = "text_too_long"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SYNTHESIS_FAILED = "synthesis_failed"
    INTERNAL = "internal"


class CloseCode(IntEnum):
    """The close codes of protocol-v1."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY = 1008
    TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


# The one table from a fatal error's code to the close code that follows it.
CLOSE_CODE_FOR_ERROR: dict[ErrorCode, CloseCode] = {
    ErrorCode.BAD_MESSAGE: CloseCode.POLICY,
    ErrorCode.INVALID_PARAM: CloseCode.POLICY,
    ErrorCode.INVALID_VOICE: CloseCode.POLICY,
    ErrorCode.TEXT_TOO_LONG: CloseCode.POLICY,
    ErrorCode.RATE_LIMITED: CloseCode.POLICY,
    ErrorCode.OVERLOADED: CloseCode.TRY_AGAIN_LATER,
    ErrorCode.SYNTHESIS_FAILED: CloseCode.INTERNAL_ERROR,
    ErrorCode.INTERNAL: CloseCode.INTERNAL_ERROR,
}


class LitestreamError(Exception):
    """Root of every error litestream raises on purpose."""


class ConfigError(LitestreamError):
    """A setting has an invalid value; the server refuses to start."""


class VoiceError(LitestreamError):
    """A voice cannot be found or loaded."""


class SynthesisError(LitestreamError):
    """The engine failed on one chunk."""


class ProtocolError(LitestreamError):
    """A client broke protocol-v1; carries the spec's error code.

    ``fatal`` errors close the stream (with ``close_code``); the others answer with an
    ``error`` message and the stream goes on.
    """

    def __init__(self, code: ErrorCode, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal

    @property
    def close_code(self) -> CloseCode:
        return CLOSE_CODE_FOR_ERROR[self.code]
