-- Schema version 3: the admin audit log (spool.AuditEntry as JSON).
CREATE TABLE spool_audit (
    seq   bigserial PRIMARY KEY,
    at_ns bigint NOT NULL,
    entry jsonb NOT NULL
);
CREATE INDEX spool_audit_at ON spool_audit (at_ns, seq);
