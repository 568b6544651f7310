-- Who did what to which resource, and when: approvals, merges, syncs, bot commands.
CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    subject text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);

-- The audit views list the newest entries first and filter by time range.
CREATE INDEX audit_log_at_idx ON audit_log (at);
