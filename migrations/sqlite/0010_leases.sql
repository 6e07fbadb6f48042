-- Leases (issue 16, cluster); see the PostgreSQL migration. A SQLite node is alone, so it
-- holds every lease, but the table keeps the two schemas the same.
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    token       INTEGER NOT NULL,
    expires_at  TEXT NOT NULL
);
