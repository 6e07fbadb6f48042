-- Stock reservations: what each open reservation (an order, from the orders issue on) holds.
-- The inventory shard writes the reservation row, its items and the pharmacy_stock change in
-- one transaction; the primary key makes a retried reservation a no-op, and the status
-- makes commit and release happen at most once.
CREATE TABLE stock_reservations (
    id           uuid PRIMARY KEY,                  -- the order id, once orders exist
    pharmacy_id  uuid NOT NULL REFERENCES pharmacies (id),
    status       text NOT NULL CHECK (status IN ('held', 'committed', 'released')),
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX stock_reservations_held_idx ON stock_reservations (pharmacy_id) WHERE status = 'held';

CREATE TABLE stock_reservation_items (
    reservation_id  uuid NOT NULL REFERENCES stock_reservations (id) ON DELETE CASCADE,
    medicine_id     uuid NOT NULL REFERENCES medicines (id),
    qty             bigint NOT NULL CHECK (qty > 0),
    PRIMARY KEY (reservation_id, medicine_id)
);
