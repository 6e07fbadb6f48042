-- The embedded event bus's journal: every published event once (by its id), read by each
-- durable handler from its own cursor, so an event counts as handled only when the handler
-- has finished with it (a crash replays from the cursor). Rows every cursor has passed are
-- deleted.
CREATE TABLE bus_events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    uuid NOT NULL UNIQUE,
    body        jsonb NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE bus_cursors (
    handler     text PRIMARY KEY,
    seq         BIGINT NOT NULL,
    updated_at  timestamptz NOT NULL
);
