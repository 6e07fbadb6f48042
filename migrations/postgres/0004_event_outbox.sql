-- order_events doubles as the outbox: an event is marked once the bus has it, and a relay
-- republishes (with the same event id) whatever a crash or a bus outage left unmarked.
ALTER TABLE order_events ADD COLUMN published_at timestamptz;
UPDATE order_events SET published_at = created_at;
CREATE INDEX order_events_unpublished_idx ON order_events (created_at) WHERE published_at IS NULL;
