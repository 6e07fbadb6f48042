-- Saved delivery addresses (contract v1.2, `/api/v1/me/addresses`). A customer keeps at
-- most MAX_ADDRESSES_PER_USER of them. While any exist, exactly one is the default: the
-- partial unique index allows at most one per user, and the store's writes (each one
-- transaction, serialised per user) keep at least one. An order placed with `address_id`
-- copies the address into its own delivery columns, so later edits and deletes of the
-- address never change an order; orders keep no reference to it.
CREATE TABLE addresses (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    label       text NOT NULL,
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lng         double precision NOT NULL CHECK (lng BETWEEN -180 AND 180),
    address     text NOT NULL,
    is_default  boolean NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX addresses_user_idx ON addresses (user_id, created_at);
CREATE UNIQUE INDEX addresses_one_default_idx ON addresses (user_id) WHERE is_default;
