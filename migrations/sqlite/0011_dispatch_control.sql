-- The operator's dispatch controls, kept so they outlive the node that runs dispatch: a
-- restarted node, or in a cluster the node that takes dispatch over, starts as the operator
-- left it (issue 16: the pause used to live in one matcher's memory). One row.
CREATE TABLE dispatch_control (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    paused  INTEGER NOT NULL DEFAULT 0
);
INSERT INTO dispatch_control (id, paused) VALUES (1, 0);
