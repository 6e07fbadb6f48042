-- Leases (issue 16, cluster): at most one holder per name (a matcher region) at a time.
-- `token` is the fencing token: it grows by one with every grant and is never reset (a
-- released or expired lease keeps its row), so a write guarded by "my token is still the
-- lease's" cannot come from a holder that lost the lease. Kept here, not in Redis, so a
-- Redis restart cannot hand out a token twice. Times are the database's clock.
CREATE TABLE leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    token       bigint NOT NULL,
    expires_at  timestamptz NOT NULL
);
