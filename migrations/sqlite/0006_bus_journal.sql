-- The embedded event bus's journal: every published event once (by its id), read by each
-- durable handler from its own cursor, so an event counts as handled only when the handler
-- has finished with it (a crash replays from the cursor). Rows every cursor has passed are
-- deleted.
CREATE TABLE bus_events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    BLOB NOT NULL UNIQUE,
    body        TEXT NOT NULL,               -- the event as JSON
    created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE bus_cursors (
    handler     TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,            -- the last bus_events.seq it finished
    updated_at  TEXT NOT NULL
) STRICT;
