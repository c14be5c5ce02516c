-- spoold's PostgreSQL spool, schema version 1.
--
-- Times the queue orders and compares by are bigint Unix nanoseconds
-- (timestamptz keeps microseconds and would round a due time past the
-- moment a worker asks for it). Names are COLLATE "C" so that listings sort
-- by bytes, as the embedded spool does, whatever the database's locale.

CREATE TABLE spool_messages (
    id              text COLLATE "C" PRIMARY KEY,
    state           text NOT NULL CHECK (state IN ('queued', 'active', 'deferred', 'held', 'dead', 'delivered')),
    account         text COLLATE "C" NOT NULL,
    next_attempt_ns bigint NOT NULL,
    lease_owner     text NOT NULL DEFAULT '',
    lease_until_ns  bigint NOT NULL DEFAULT 0,
    created_ns      bigint NOT NULL,
    updated_ns      bigint NOT NULL,
    -- Unique: two nodes handed the same scan file store it once.
    idempotency_key text COLLATE "C" UNIQUE,
    -- The body is stored (in spool_body_chunks) while the message needs it.
    body_present    boolean NOT NULL,
    body_chunks     integer NOT NULL DEFAULT 0,
    -- The whole record (recipients with their states, attempt history,
    -- last error, source) as the spool's JSON: every transition rewrites
    -- it under the row lock, in the same statement as the columns above.
    msg             jsonb NOT NULL
);

-- What claims, NextDue and DueAccounts read: due messages by due time.
CREATE INDEX spool_messages_due ON spool_messages (next_attempt_ns, id)
    WHERE state IN ('queued', 'deferred');
CREATE INDEX spool_messages_account_due ON spool_messages (account, next_attempt_ns, id)
    WHERE state IN ('queued', 'deferred');
-- What the rescuer reads: leases by expiry.
CREATE INDEX spool_messages_leases ON spool_messages (lease_until_ns)
    WHERE state = 'active';
-- Listings by state and purges by age.
CREATE INDEX spool_messages_state ON spool_messages (state, id);
CREATE INDEX spool_messages_state_updated ON spool_messages (state, updated_ns)
    WHERE state IN ('dead', 'delivered');

-- Bodies in chunks of at most 256 KiB, so that neither enqueue nor
-- delivery holds a 35 MB scan in memory. Deleted with their message.
CREATE TABLE spool_body_chunks (
    id   text COLLATE "C" NOT NULL REFERENCES spool_messages (id) ON DELETE CASCADE,
    seq  integer NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (id, seq)
);
-- Mail bodies are mostly compressed attachments: skip the compression attempt.
ALTER TABLE spool_body_chunks ALTER COLUMN data SET STORAGE EXTERNAL;

-- Per-account records: auth tokens (sealed) and health.
CREATE TABLE spool_accounts (
    account text COLLATE "C" NOT NULL,
    key     text COLLATE "C" NOT NULL,
    value   bytea NOT NULL,
    PRIMARY KEY (account, key)
);

-- The alerter's records.
CREATE TABLE spool_alerts (
    key   text COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL
);

-- Recipients counted against each account's daily budget.
CREATE TABLE spool_budget (
    account    text COLLATE "C" NOT NULL,
    at_ns      bigint NOT NULL,
    id         text COLLATE "C" NOT NULL,
    recipients integer NOT NULL,
    PRIMARY KEY (account, at_ns, id)
);

-- The account that delivered a message when a fallback did.
CREATE TABLE spool_routes (
    id      text COLLATE "C" PRIMARY KEY,
    account text NOT NULL
);

-- The nodes sharing this spool and when each was last seen.
CREATE TABLE spool_nodes (
    node      text COLLATE "C" PRIMARY KEY,
    started   timestamptz NOT NULL,
    heartbeat timestamptz NOT NULL
);
