"""How a message handler tells the transport what to do with a message it could not process."""


class PermanentError(Exception):
    """Retrying cannot help (bad data, impossible request): park the message at once."""


class TransientError(Exception):
    """Worth another try later (a dependency is down): retry with growing delay, then park."""


class DependencyUnavailable(TransientError):
    """A server the handler needs (the database) cannot be reached: the message is not at fault,
    so it is tried again until the server is back and never parked for it."""


class MalformedMessage(PermanentError):
    """The bytes are not a CloudEvents envelope we can read."""


class PublishError(Exception):
    """The broker did not confirm a message (nack, timeout, unroutable): it may not be sent."""
