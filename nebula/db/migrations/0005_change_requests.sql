-- Change requests: a proposed change as a commit on its own branch, waiting for approval.
CREATE TABLE change_requests (
    id bigserial PRIMARY KEY,
    title text NOT NULL,
    intent jsonb NOT NULL,              -- the typed intent (nebula.changes.intents) that made it
    requester text NOT NULL,            -- who asked, as "Name <email>" or a chat handle
    origin text NOT NULL,               -- discord | web | cli | pipeline
    source text NOT NULL,               -- the GitSource it changes ('<namespace>.<name>')
    target_branch text NOT NULL,        -- the branch it merges into
    branch text NOT NULL,               -- changes/<id>
    file text NOT NULL,                 -- the manifest it edits, in the repository
    base_revision text NOT NULL,        -- the target branch's commit the change was made on
    head_revision text NOT NULL,        -- the change's commit
    merge_revision text,                -- the target branch's commit that holds it, once merged
    diff text NOT NULL,                 -- unified diff of the edited file
    state text NOT NULL CHECK (state IN
        ('open', 'approved', 'merged', 'applied', 'rejected', 'conflict')),
    conflict_files jsonb NOT NULL DEFAULT '[]',
    decided_by text,                    -- who approved or rejected it
    reason text,                        -- why it was rejected, or what the conflict is
    idempotency_key text NOT NULL,      -- the same request twice opens one change
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The queue lists open changes newest first; the sync follows merged ones of its source.
CREATE INDEX change_requests_state_idx ON change_requests (state, created_at DESC);
CREATE INDEX change_requests_source_idx ON change_requests (source, state);
-- One live change per request: asking again while it waits returns the same change.
CREATE UNIQUE INDEX change_requests_live_key ON change_requests (idempotency_key)
    WHERE state IN ('open', 'approved', 'conflict');

-- The web UI and the bots LISTEN for moves of changes (payload: the change's id).
CREATE FUNCTION nebula_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nebula_changes', NEW.id::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER change_requests_notify
    AFTER INSERT OR UPDATE ON change_requests
    FOR EACH ROW EXECUTE FUNCTION nebula_notify_change();
