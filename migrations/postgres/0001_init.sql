-- Medify schema, PostgreSQL dialect. The SQLite twin (migrations/sqlite/0001_init.sql) has
-- the same tables, columns and indexes with SQLite's storage classes; keep them in step.
-- Native types: uuid, timestamptz, jsonb, bytea. Money is integer cents (bigint).
-- Timestamps are always written by the application, never by column defaults, so both
-- backends store the same values.

CREATE TABLE pharmacies (
    id          uuid PRIMARY KEY,
    name        text NOT NULL,
    lat         double precision NOT NULL CHECK (lat BETWEEN -90 AND 90),
    lng         double precision NOT NULL CHECK (lng BETWEEN -180 AND 180),
    address     text NOT NULL,
    h3_cell     bigint NOT NULL,            -- H3 index (u64 bits as i64) at the pharmacy resolution
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX pharmacies_h3_cell_idx ON pharmacies (h3_cell);

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    email         text UNIQUE,               -- trimmed, lower-cased; NULL for phone-only customers
    phone         text UNIQUE,               -- E.164
    password_hash text,                      -- argon2id PHC string; NULL for OTP-only accounts
    role          text NOT NULL CHECK (role IN ('customer', 'rider', 'pharmacy', 'admin')),
    pharmacy_id   uuid REFERENCES pharmacies (id),
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    CHECK (email IS NOT NULL OR phone IS NOT NULL)
);
CREATE INDEX users_pharmacy_idx ON users (pharmacy_id) WHERE pharmacy_id IS NOT NULL;

-- Opaque refresh tokens, stored as SHA-256 only, rotated on every use, grouped in families.
CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    family_id   uuid NOT NULL,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    rotated_at  timestamptz,                 -- set when exchanged for a successor
    revoked_at  timestamptz                  -- logout, or reuse of a rotated token
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_expiry_idx ON refresh_tokens (expires_at);

-- At most one live code per phone; the hash only.
CREATE TABLE otp_codes (
    phone       text PRIMARY KEY,
    code_hash   bytea NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    sent_at     timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

CREATE TABLE medicines (
    id            uuid PRIMARY KEY,
    name          text NOT NULL,
    generic_name  text,
    brand         text,
    sku           text NOT NULL,
    price_cents   bigint NOT NULL CHECK (price_cents >= 0),
    rx_required   boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted_at    timestamptz                -- soft delete: past orders keep their lines
);
CREATE UNIQUE INDEX medicines_sku_key ON medicines (sku) WHERE deleted_at IS NULL;
CREATE INDEX medicines_name_idx ON medicines (name) WHERE deleted_at IS NULL;

-- quantity: on the shelf; reserved: held by open orders. 0 <= reserved <= quantity, enforced here too.
CREATE TABLE pharmacy_stock (
    pharmacy_id  uuid NOT NULL REFERENCES pharmacies (id) ON DELETE CASCADE,
    medicine_id  uuid NOT NULL REFERENCES medicines (id),
    quantity     bigint NOT NULL CHECK (quantity >= 0),
    reserved     bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0 AND reserved <= quantity),
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (pharmacy_id, medicine_id)
);
CREATE INDEX pharmacy_stock_medicine_idx ON pharmacy_stock (medicine_id, pharmacy_id);

CREATE TABLE orders (
    id                uuid PRIMARY KEY,
    customer_id       uuid NOT NULL REFERENCES users (id),
    pharmacy_id       uuid NOT NULL REFERENCES pharmacies (id),
    rider_id          uuid REFERENCES users (id),
    status            text NOT NULL CHECK (status IN ('confirmed', 'dispatching', 'assigned',
                                           'picked_up', 'delivered', 'cancelled', 'failed')),
    total_cents       bigint NOT NULL CHECK (total_cents >= 0),
    delivery_lat      double precision NOT NULL CHECK (delivery_lat BETWEEN -90 AND 90),
    delivery_lng      double precision NOT NULL CHECK (delivery_lng BETWEEN -180 AND 180),
    delivery_address  text NOT NULL,
    delivery_code     text NOT NULL,         -- 4 digits, shown to the customer and admins only
    code_failures     integer NOT NULL DEFAULT 0,
    version           integer NOT NULL DEFAULT 0,  -- = seq of the last order_events row
    dispatch_deadline timestamptz,           -- fail the order if no rider accepted by then
    arriving_at       timestamptz,           -- the 300 m geofence fired (once)
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX orders_customer_idx ON orders (customer_id, created_at DESC);
CREATE INDEX orders_rider_idx ON orders (rider_id, created_at DESC) WHERE rider_id IS NOT NULL;
CREATE INDEX orders_pharmacy_idx ON orders (pharmacy_id, created_at DESC);
CREATE INDEX orders_created_idx ON orders (created_at DESC);
CREATE INDEX orders_active_idx ON orders (status)
    WHERE status NOT IN ('delivered', 'cancelled', 'failed');

CREATE TABLE order_items (
    order_id     uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    line         integer NOT NULL,
    medicine_id  uuid NOT NULL REFERENCES medicines (id),
    qty          integer NOT NULL CHECK (qty BETWEEN 1 AND 100),
    price_cents  bigint NOT NULL CHECK (price_cents >= 0),  -- unit price at order time
    PRIMARY KEY (order_id, line)
);
CREATE INDEX order_items_medicine_idx ON order_items (medicine_id);

-- The journal: one row per transition, written with the order row in one transaction.
CREATE TABLE order_events (
    order_id     uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    seq          integer NOT NULL,
    event        text NOT NULL,
    from_status  text,
    to_status    text NOT NULL,
    actor_id     uuid,
    payload      jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- A rider's durable profile; live position is in memory, this is its periodic snapshot.
CREATE TABLE riders (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    available   boolean NOT NULL DEFAULT false,
    last_lat    double precision,
    last_lng    double precision,
    last_ts     bigint,                      -- epoch milliseconds of the last accepted fix
    updated_at  timestamptz NOT NULL
);

CREATE TABLE offers (
    id            uuid PRIMARY KEY,
    order_id      uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    rider_id      uuid NOT NULL REFERENCES users (id),
    status        text NOT NULL CHECK (status IN ('pending', 'accepted', 'rejected', 'expired', 'withdrawn')),
    distance_m    integer NOT NULL,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,
    responded_at  timestamptz
);
CREATE INDEX offers_order_idx ON offers (order_id);
CREATE INDEX offers_rider_pending_idx ON offers (rider_id) WHERE status = 'pending';

CREATE TABLE notifications (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    type        text NOT NULL,
    payload     jsonb NOT NULL,
    status      text NOT NULL DEFAULT 'unread' CHECK (status IN ('unread', 'read')),
    dedupe_key  text NOT NULL UNIQUE,        -- event id + type: a redelivered event writes once
    created_at  timestamptz NOT NULL
);
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC);

CREATE TABLE idempotency_keys (
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,            -- SHA-256 of the canonical request body
    order_id      uuid REFERENCES orders (id) ON DELETE CASCADE,
    created_at    timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL,      -- 24 h after creation
    PRIMARY KEY (user_id, key)
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);

-- Sampled GPS trail per order, written in batches off the hot path.
CREATE TABLE rider_trail (
    id        bigserial PRIMARY KEY,
    order_id  uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    rider_id  uuid NOT NULL REFERENCES users (id),
    lat       double precision NOT NULL,
    lng       double precision NOT NULL,
    ts        bigint NOT NULL                -- epoch milliseconds
);
CREATE INDEX rider_trail_order_idx ON rider_trail (order_id, ts);
