-- Prescriptions (issue 17, uploads). A customer's uploaded file lives in the object store
-- (OBJECT_STORE) under `object_key`; this row only describes it. `sha256` is the file's
-- digest in lower-case hex, `content_type` what its first bytes say it is (never what the
-- client claimed).
CREATE TABLE prescriptions (
    id            uuid PRIMARY KEY,
    customer_id   uuid NOT NULL REFERENCES users (id),
    content_type  text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'application/pdf')),
    size_bytes    bigint NOT NULL CHECK (size_bytes > 0),
    sha256        text NOT NULL CHECK (length(sha256) = 64),
    object_key    text NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL
);
CREATE INDEX prescriptions_customer_idx ON prescriptions (customer_id, created_at DESC);
CREATE INDEX prescriptions_created_idx ON prescriptions (created_at DESC);

-- The prescription an order carries, if any. Pharmacy staff see a prescription through the
-- orders of their pharmacy that carry it.
ALTER TABLE orders ADD COLUMN prescription_id uuid REFERENCES prescriptions (id);
CREATE INDEX orders_prescription_idx ON orders (prescription_id, pharmacy_id)
    WHERE prescription_id IS NOT NULL;
