"""The one small error hierarchy every hastack module raises from.

Protocol errors carry the exact bytes to send back, so a server's read loop is always:
try to parse; on ``ProtocolError`` write ``err.reply`` and, if ``err.fatal``, close. Anything
else escaping a parser is a bug, not bad input.
"""

from __future__ import annotations


class HastackError(Exception):
    """Base class of every error hastack raises on purpose."""


class ConfigError(HastackError):
    """One or more problems in a config file; each names file, table and key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class ProtocolError(HastackError):
    """Malformed or over-limit input from a peer.

    ``reply`` is what the protocol says to answer (``CLIENT_ERROR bad data chunk\\r\\n``, an
    HTTP 400 response, a STOMP ERROR frame); empty when the protocol has no reply. ``fatal``
    means the connection cannot be resynchronised and must be closed after the reply.
    """

    def __init__(self, message: str, reply: bytes = b"", *, fatal: bool = False) -> None:
        super().__init__(message)
        self.reply = reply
        self.fatal = fatal


class BufferLimitExceeded(ProtocolError):
    """The peer sent more unparsed bytes than the codec's limit allows."""


class ServiceError(HastackError):
    """A service could not start or stop (address in use, bad state directory, ...)."""
