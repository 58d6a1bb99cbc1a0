"""Prometheus metrics every service exposes on /metrics; labels name the channel, never an id."""

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_PUBLISHED = Counter(
    "switchyard_messages_published_total", "Messages confirmed by a broker", ["broker", "channel"]
)
MESSAGES_CONSUMED = Counter(
    "switchyard_messages_consumed_total", "Messages handled and acknowledged", ["broker", "channel"]
)
MESSAGES_UNREAD = Counter(
    "switchyard_messages_unread_total",
    "Records committed unread: their ce_type has no handler in this consumer group",
    ["broker", "channel"],
)
MESSAGES_RETRIED = Counter(
    "switchyard_messages_retried_total",
    "Messages scheduled for another attempt",
    ["broker", "channel"],
)
MESSAGES_DEAD_LETTERED = Counter(
    "switchyard_messages_dead_lettered_total",
    "Messages parked with their error",
    ["broker", "channel"],
)
DUPLICATES_SKIPPED = Counter(
    "switchyard_inbox_duplicates_total",
    "Redelivered messages acknowledged and skipped",
    ["consumer"],
)
HANDLER_SECONDS = Histogram(
    "switchyard_handler_seconds", "Time spent in a message handler", ["broker", "channel"]
)
OUTBOX_BACKLOG = Gauge("switchyard_outbox_backlog", "Outbox rows not yet sent", ["schema"])
OUTBOX_OLDEST_AGE = Gauge(
    "switchyard_outbox_oldest_age_seconds", "Age of the oldest unsent outbox row", ["schema"]
)
WEBHOOKS = Counter("switchyard_webhooks_total", "Webhook requests by outcome", ["outcome"])
DEAD_LETTER_OLDEST_AGE = Gauge(
    "switchyard_dead_letter_oldest_age_seconds",
    "Age of the oldest message parked in a .dlq or .dlt (0 when none)",
    ["broker", "channel"],
)
CONSUMER_READY = Gauge(
    "switchyard_consumer_ready",
    "1 if the consumer lived and kept up at the last readiness check, else 0",
    ["broker", "consumer"],
)
CONSUMER_RESTARTS = Counter(
    "switchyard_consumer_restarts_total",
    "Consumers restarted after they died",
    ["broker", "consumer"],
)
