-- Prescription review and payments (issue 17): two statuses between `confirmed` and
-- `dispatching` (`awaiting_prescription`, `awaiting_payment`), the order's payment and
-- why it was cancelled, the payment status each journal entry moved to, and the payment
-- provider's event ids (a repeated report has no second effect).
ALTER TABLE orders DROP CONSTRAINT orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check CHECK (status IN ('confirmed',
    'awaiting_prescription', 'awaiting_payment', 'dispatching', 'assigned', 'picked_up',
    'delivered', 'cancelled', 'failed'));

-- Orders from before: cash on delivery, paid once delivered.
ALTER TABLE orders ADD COLUMN payment_method text NOT NULL DEFAULT 'cod'
    CHECK (payment_method IN ('cod', 'online'));
ALTER TABLE orders ADD COLUMN payment_status text NOT NULL DEFAULT 'pending'
    CHECK (payment_status IN ('pending', 'paid', 'failed', 'refund_pending', 'refunded'));
UPDATE orders SET payment_status = 'paid' WHERE status = 'delivered';
ALTER TABLE orders ADD COLUMN payment_intent_id text UNIQUE;
ALTER TABLE orders ADD COLUMN cancel_reason text
    CHECK (cancel_reason IN ('customer', 'admin', 'prescription_rejected', 'payment_failed'));

-- The payment status a journal entry moved to (null: the entry left the payment alone).
ALTER TABLE order_events ADD COLUMN payment_status text;

-- Reports of the payment provider already acted on, by the provider's event id.
CREATE TABLE payment_events (
    id          text PRIMARY KEY,
    kind        text NOT NULL,
    order_id    uuid NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    received_at timestamptz NOT NULL
);
