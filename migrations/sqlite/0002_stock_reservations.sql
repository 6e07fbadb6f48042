-- Stock reservations: what each open reservation (an order, from the orders issue on) holds.
-- The inventory shard writes the reservation row, its items and the pharmacy_stock change in
-- one transaction; the primary key makes a retried reservation a no-op, and the status
-- makes commit and release happen at most once.
CREATE TABLE stock_reservations (
    id           BLOB PRIMARY KEY,                  -- the order id, once orders exist
    pharmacy_id  BLOB NOT NULL REFERENCES pharmacies (id),
    status       TEXT NOT NULL CHECK (status IN ('held', 'committed', 'released')),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
) STRICT;
CREATE INDEX stock_reservations_held_idx ON stock_reservations (pharmacy_id) WHERE status = 'held';

CREATE TABLE stock_reservation_items (
    reservation_id  BLOB NOT NULL REFERENCES stock_reservations (id) ON DELETE CASCADE,
    medicine_id     BLOB NOT NULL REFERENCES medicines (id),
    qty             INTEGER NOT NULL CHECK (qty > 0),
    PRIMARY KEY (reservation_id, medicine_id)
) STRICT;
