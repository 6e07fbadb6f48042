-- Saved delivery addresses (contract v1.2, `/api/v1/me/addresses`). A customer keeps at
-- most MAX_ADDRESSES_PER_USER of them. While any exist, exactly one is the default: the
-- partial unique index allows at most one per user, and the store's writes (each one
-- transaction, serialised per user) keep at least one. An order placed with `address_id`
-- copies the address into its own delivery columns, so later edits and deletes of the
-- address never change an order; orders keep no reference to it.
CREATE TABLE addresses (
    id          BLOB PRIMARY KEY,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label       TEXT NOT NULL,
    lat         REAL NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lng         REAL NOT NULL CHECK (lng BETWEEN -180 AND 180),
    address     TEXT NOT NULL,
    is_default  INTEGER NOT NULL CHECK (is_default IN (0, 1)),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;
CREATE INDEX addresses_user_idx ON addresses (user_id, created_at);
CREATE UNIQUE INDEX addresses_one_default_idx ON addresses (user_id) WHERE is_default = 1;
