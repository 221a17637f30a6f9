"""The one exception root. Library code raises these; only cli/ and web/ translate them."""

from __future__ import annotations


class MailerError(Exception):
    """A problem the user can act on; the message names what is wrong."""


class ConfigError(MailerError):
    """A setting is missing, malformed or contradicts another."""


class NotFoundError(MailerError):
    """A list, contact, release or campaign that does not exist."""


class InvalidInputError(MailerError):
    """User-supplied data (an address, a file, an option) is not acceptable."""


class ImportFileError(InvalidInputError):
    """A contact file cannot be read as a whole (wrong format, no email column, ...)."""


class ReleaseError(InvalidInputError):
    """A release file is malformed (front matter, YAML, Markdown)."""


class SendError(MailerError):
    """A campaign cannot be planned, started or resumed."""


class TransportError(MailerError):
    """The mail server or the outbox cannot be used (login refused, TLS failure, ...)."""


class AlreadyRunningError(SendError):
    """Another sender holds the lock for this database."""


class TokenError(MailerError):
    """A signed token is forged, altered or expired."""
