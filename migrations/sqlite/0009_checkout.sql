-- Prescription review and payments (issue 17): two statuses between `confirmed` and
-- `dispatching` (`awaiting_prescription`, `awaiting_payment`), the order's payment and
-- why it was cancelled, the payment status each journal entry moved to, and the payment
-- provider's event ids (a repeated report has no second effect).
--
-- SQLite cannot change a CHECK constraint in place, so `orders` is rebuilt: a new table,
-- the rows copied, the old one dropped, the new one renamed. Every other table refers to
-- orders with ON DELETE CASCADE, so this only works with foreign keys off: the store runs
-- SQLite migrations on a connection with them off and checks every key afterwards
-- (`migrate_sqlite` in src/store/mod.rs).

CREATE TABLE orders_rebuilt (
    id                BLOB PRIMARY KEY,
    customer_id       BLOB NOT NULL REFERENCES users (id),
    pharmacy_id       BLOB NOT NULL REFERENCES pharmacies (id),
    rider_id          BLOB REFERENCES users (id),
    status            TEXT NOT NULL CHECK (status IN ('confirmed', 'awaiting_prescription',
                                           'awaiting_payment', 'dispatching', 'assigned',
                                           'picked_up', 'delivered', 'cancelled', 'failed')),
    total_cents       INTEGER NOT NULL CHECK (total_cents >= 0),
    delivery_lat      REAL NOT NULL CHECK (delivery_lat BETWEEN -90 AND 90),
    delivery_lng      REAL NOT NULL CHECK (delivery_lng BETWEEN -180 AND 180),
    delivery_address  TEXT NOT NULL,
    delivery_code     TEXT NOT NULL,
    code_failures     INTEGER NOT NULL DEFAULT 0,
    version           INTEGER NOT NULL DEFAULT 0,
    dispatch_deadline TEXT,
    arriving_at       TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    prescription_id   BLOB REFERENCES prescriptions (id),
    payment_method    TEXT NOT NULL DEFAULT 'cod' CHECK (payment_method IN ('cod', 'online')),
    payment_status    TEXT NOT NULL DEFAULT 'pending'
                      CHECK (payment_status IN ('pending', 'paid', 'failed', 'refund_pending', 'refunded')),
    payment_intent_id TEXT UNIQUE,
    cancel_reason     TEXT CHECK (cancel_reason IN ('customer', 'admin', 'prescription_rejected', 'payment_failed'))
) STRICT;

-- Orders from before: cash on delivery, paid once delivered.
INSERT INTO orders_rebuilt (id, customer_id, pharmacy_id, rider_id, status, total_cents,
    delivery_lat, delivery_lng, delivery_address, delivery_code, code_failures, version,
    dispatch_deadline, arriving_at, created_at, updated_at, prescription_id, payment_method,
    payment_status)
SELECT id, customer_id, pharmacy_id, rider_id, status, total_cents, delivery_lat,
    delivery_lng, delivery_address, delivery_code, code_failures, version, dispatch_deadline,
    arriving_at, created_at, updated_at, prescription_id, 'cod',
    CASE WHEN status = 'delivered' THEN 'paid' ELSE 'pending' END
FROM orders;

DROP TABLE orders;
ALTER TABLE orders_rebuilt RENAME TO orders;

CREATE INDEX orders_customer_idx ON orders (customer_id, created_at DESC);
CREATE INDEX orders_rider_idx ON orders (rider_id, created_at DESC) WHERE rider_id IS NOT NULL;
CREATE INDEX orders_pharmacy_idx ON orders (pharmacy_id, created_at DESC);
CREATE INDEX orders_created_idx ON orders (created_at DESC);
CREATE INDEX orders_active_idx ON orders (status)
    WHERE status NOT IN ('delivered', 'cancelled', 'failed');
CREATE INDEX orders_prescription_idx ON orders (prescription_id, pharmacy_id)
    WHERE prescription_id IS NOT NULL;

-- The payment status a journal entry moved to (null: the entry left the payment alone).
ALTER TABLE order_events ADD COLUMN payment_status TEXT;

-- Reports of the payment provider already acted on, by the provider's event id.
CREATE TABLE payment_events (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    order_id    BLOB NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    received_at TEXT NOT NULL
) STRICT;
