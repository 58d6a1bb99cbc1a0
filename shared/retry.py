"""How long a failed message waits before each retry: one policy, in seconds, for both brokers.

RabbitMQ turns each delay into a retry queue's TTL; Kafka waits in-process, holding the
partition. Either way the message is tried once more per delay, then parked.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """`delays[n]` is the wait after failed attempt n + 1; after the last one the message is parked."""

    delays: tuple[float, ...]

    def __post_init__(self) -> None:
        # Waiting for a server that is down needs a delay too, so even "park at once" has one.
        if not self.delays:
            raise ValueError("a retry policy needs at least one delay")
        if any(delay <= 0 for delay in self.delays):
            raise ValueError(f"retry delays must be positive seconds: {self.delays}")

    @property
    def attempts(self) -> int:
        """How often a failing message is handed to its handler before it is parked."""
        return len(self.delays) + 1

    def delay_after(self, attempt: int) -> float | None:
        """Seconds to wait after failed attempt number `attempt` (1-based); None: park it."""
        return self.delays[attempt - 1] if attempt <= len(self.delays) else None

    def wait(self, times: int) -> float:
        """The `times`-th wait for something that is not the message's fault (a server down).

        The delays in turn, then the last again: an outage never uses up the message's attempts.
        """
        return self.delays[min(times, len(self.delays)) - 1]
