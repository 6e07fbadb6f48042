-- Medify schema, SQLite dialect. The PostgreSQL twin (migrations/postgres/0001_init.sql) has
-- the same tables, columns and indexes with native types; keep them in step.
-- STRICT tables; uuid = 16-byte BLOB, timestamps = RFC 3339 TEXT (UTC), json = TEXT,
-- booleans = INTEGER 0/1. Money is integer cents.
-- Timestamps are always written by the application, never by column defaults, so both
-- backends store the same values.

CREATE TABLE pharmacies (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL,
    lat         REAL NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lng         REAL NOT NULL CHECK (lng BETWEEN -180 AND 180),
    address     TEXT NOT NULL,
    h3_cell     INTEGER NOT NULL,            -- H3 index (u64 bits as i64) at the pharmacy resolution
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;
CREATE INDEX pharmacies_h3_cell_idx ON pharmacies (h3_cell);

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    name          TEXT NOT NULL,
    email         TEXT UNIQUE,               -- trimmed, lower-cased; NULL for phone-only customers
    phone         TEXT UNIQUE,               -- E.164
    password_hash TEXT,                      -- argon2id PHC string; NULL for OTP-only accounts
    role          TEXT NOT NULL CHECK (role IN ('customer', 'rider', 'pharmacy', 'admin')),
    pharmacy_id   BLOB REFERENCES pharmacies (id),
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    CHECK (email IS NOT NULL OR phone IS NOT NULL)
) STRICT;
CREATE INDEX users_pharmacy_idx ON users (pharmacy_id) WHERE pharmacy_id IS NOT NULL;

-- Opaque refresh tokens, stored as SHA-256 only, rotated on every use, grouped in families.
CREATE TABLE refresh_tokens (
    id          BLOB PRIMARY KEY,
    family_id   BLOB NOT NULL,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    rotated_at  TEXT,                 -- set when exchanged for a successor
    revoked_at  TEXT                  -- logout, or reuse of a rotated token
) STRICT;
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expiry_idx ON refresh_tokens (expires_at);

-- At most one live code per phone; the hash only.
CREATE TABLE otp_codes (
    phone       TEXT PRIMARY KEY,
    code_hash   BLOB NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    sent_at     TEXT NOT NULL,
    expires_at  TEXT NOT NULL
) STRICT;

CREATE TABLE medicines (
    id            BLOB PRIMARY KEY,
    name          TEXT NOT NULL,
    generic_name  TEXT,
    brand         TEXT,
    sku           TEXT NOT NULL,
    price_cents   INTEGER NOT NULL CHECK (price_cents >= 0),
    rx_required   INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    deleted_at    TEXT                -- soft delete: past orders keep their lines
) STRICT;
CREATE UNIQUE INDEX medicines_sku_key ON medicines (sku) WHERE deleted_at IS NULL;
CREATE INDEX medicines_name_idx ON medicines (name) WHERE deleted_at IS NULL;

-- quantity: on the shelf; reserved: held by open orders. 0 <= reserved <= quantity, enforced here too.
CREATE TABLE pharmacy_stock (
    pharmacy_id  BLOB NOT NULL REFERENCES pharmacies (id) ON DELETE CASCADE,
    medicine_id  BLOB NOT NULL REFERENCES medicines (id),
    quantity     INTEGER NOT NULL CHECK (quantity >= 0),
    reserved     INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= quantity),
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (pharmacy_id, medicine_id)
) STRICT;
CREATE INDEX pharmacy_stock_medicine_idx ON pharmacy_stock (medicine_id, pharmacy_id);

CREATE TABLE orders (
    id                BLOB PRIMARY KEY,
    customer_id       BLOB NOT NULL REFERENCES users (id),
    pharmacy_id       BLOB NOT NULL REFERENCES pharmacies (id),
    rider_id          BLOB REFERENCES users (id),
    status            TEXT NOT NULL CHECK (status IN ('confirmed', 'dispatching', 'assigned',
                                           'picked_up', 'delivered', 'cancelled', 'failed')),
    total_cents       INTEGER NOT NULL CHECK (total_cents >= 0),
    delivery_lat      REAL NOT NULL CHECK (delivery_lat BETWEEN -90 AND 90),
    delivery_lng      REAL NOT NULL CHECK (delivery_lng BETWEEN -180 AND 180),
    delivery_address  TEXT NOT NULL,
    delivery_code     TEXT NOT NULL,         -- 4 digits, shown to the customer and admins only
    code_failures     INTEGER NOT NULL DEFAULT 0,
    version           INTEGER NOT NULL DEFAULT 0,  -- = seq of the last order_events row
    dispatch_deadline TEXT,           -- fail the order if no rider accepted by then
    arriving_at       TEXT,           -- the 300 m geofence fired (once)
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
) STRICT;
CREATE INDEX orders_customer_idx ON orders (customer_id, created_at DESC);
CREATE INDEX orders_rider_idx ON orders (rider_id, created_at DESC) WHERE rider_id IS NOT NULL;
CREATE INDEX orders_pharmacy_idx ON orders (pharmacy_id, created_at DESC);
CREATE INDEX orders_created_idx ON orders (created_at DESC);
CREATE INDEX orders_active_idx ON orders (status)
    WHERE status NOT IN ('delivered', 'cancelled', 'failed');

CREATE TABLE order_items (
    order_id     BLOB NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line         INTEGER NOT NULL,
    medicine_id  BLOB NOT NULL REFERENCES medicines (id),
    qty          INTEGER NOT NULL CHECK (qty BETWEEN 1 AND 100),
    price_cents  INTEGER NOT NULL CHECK (price_cents >= 0),  -- unit price at order time
    PRIMARY KEY (order_id, line)
) STRICT;
CREATE INDEX order_items_medicine_idx ON order_items (medicine_id);

-- The journal: one row per transition, written with the order row in one transaction.
CREATE TABLE order_events (
    order_id     BLOB NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    event        TEXT NOT NULL,
    from_status  TEXT,
    to_status    TEXT NOT NULL,
    actor_id     BLOB,
    payload      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (order_id, seq)
) STRICT;

-- A rider's durable profile; live position is in memory, this is its periodic snapshot.
CREATE TABLE riders (
    user_id     BLOB PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    available   INTEGER NOT NULL DEFAULT 0,
    last_lat    REAL,
    last_lng    REAL,
    last_ts     INTEGER,                      -- epoch milliseconds of the last accepted fix
    updated_at  TEXT NOT NULL
) STRICT;

CREATE TABLE offers (
    id            BLOB PRIMARY KEY,
    order_id      BLOB NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    rider_id      BLOB NOT NULL REFERENCES users (id),
    status        TEXT NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected', 'expired', 'withdrawn')),
    distance_m    INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    responded_at  TEXT
) STRICT;
CREATE INDEX offers_order_idx ON offers (order_id);
CREATE INDEX offers_rider_pending_idx ON offers (rider_id) WHERE status = 'pending';

CREATE TABLE notifications (
    id          BLOB PRIMARY KEY,
    user_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'unread' CHECK (status IN ('unread', 'read')),
    dedupe_key  TEXT NOT NULL UNIQUE,        -- event id + type: a redelivered event writes once
    created_at  TEXT NOT NULL
) STRICT;
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC);

CREATE TABLE idempotency_keys (
    user_id       BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    request_hash  BLOB NOT NULL,            -- SHA-256 of the canonical request body
    order_id      BLOB REFERENCES orders (id) ON DELETE CASCADE,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL,      -- 24 h after creation
    PRIMARY KEY (user_id, key)
) STRICT;
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);

-- Sampled GPS trail per order, written in batches off the hot path.
CREATE TABLE rider_trail (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id  BLOB NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    rider_id  BLOB NOT NULL REFERENCES users (id),
    lat       REAL NOT NULL,
    lng       REAL NOT NULL,
    ts        INTEGER NOT NULL                -- epoch milliseconds
) STRICT;
CREATE INDEX rider_trail_order_idx ON rider_trail (order_id, ts);
