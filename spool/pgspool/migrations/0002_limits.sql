-- Schema version 2: limits shared by the nodes (pgspool/limits.go).

-- Per-account send rate, generic cell rate algorithm: the theoretical
-- arrival time of the next message, in Unix nanoseconds.
CREATE TABLE spool_rates (
    account text COLLATE "C" PRIMARY KEY,
    tat_ns  bigint NOT NULL
);

-- One row per account whose grant is refreshed: the row lock held across
-- a token request and the commit of the rotated token.
CREATE TABLE spool_grants (
    account   text COLLATE "C" PRIMARY KEY,
    refreshed timestamptz
);
