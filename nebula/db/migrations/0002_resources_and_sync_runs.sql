-- The embedded runtime's resources: what Kubernetes holds on k3s, kept in PostgreSQL.
CREATE TABLE resources (
    kind text NOT NULL,
    namespace text NOT NULL DEFAULT '',  -- '' for cluster-scoped kinds
    name text NOT NULL,
    document jsonb NOT NULL,             -- apiVersion, kind, metadata, spec: as applied
    status jsonb NOT NULL DEFAULT '{}',
    generation bigint NOT NULL DEFAULT 1,  -- grows when the spec changes, as in Kubernetes
    source text,                         -- the GitSource that applied it ('<ns>.<name>'), or null
    applied_hash text,                   -- the sync's hash of what it applied
    applied_at timestamptz,              -- when the sync last wrote it
    drifted boolean NOT NULL DEFAULT false,  -- changed since the sync wrote it (set below)
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, namespace, name)
);

-- The inventory of a source: what it applied, read on every sync.
CREATE INDEX resources_source_idx ON resources (source);

-- Drift: a change of the document by anyone but the sync (which stamps applied_at with its
-- transaction's time whenever it writes) marks the object drifted, so the next sync puts it
-- back; the check costs nothing at sync time.
CREATE FUNCTION nebula_mark_drift() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.document IS DISTINCT FROM OLD.document
       AND NEW.applied_at IS NOT DISTINCT FROM OLD.applied_at
       AND NEW.source IS NOT NULL THEN
        NEW.drifted := true;
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER resources_mark_drift
    BEFORE UPDATE ON resources
    FOR EACH ROW EXECUTE FUNCTION nebula_mark_drift();

-- Reconcilers and the UI LISTEN instead of polling. "spec" says whether the object itself
-- changed (insert, delete, new document) or only its status, so a reconciler is not woken by
-- its own status write.
CREATE FUNCTION nebula_notify_resource() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed resources;
BEGIN
    changed := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
    PERFORM pg_notify('nebula_resources', json_build_object(
        'kind', changed.kind,
        'namespace', changed.namespace,
        'name', changed.name,
        'op', lower(TG_OP),
        'spec', TG_OP <> 'UPDATE' OR NEW.document IS DISTINCT FROM OLD.document
    )::text);
    RETURN NULL;
END;
$$;

CREATE TRIGGER resources_notify
    AFTER INSERT OR UPDATE OR DELETE ON resources
    FOR EACH ROW EXECUTE FUNCTION nebula_notify_resource();

-- One row per sync of a source: what revision, who committed it, what changed, how it ended.
CREATE TABLE sync_runs (
    id bigserial PRIMARY KEY,
    source text NOT NULL,
    revision text,
    author text,
    message text,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    created integer NOT NULL DEFAULT 0,
    updated integer NOT NULL DEFAULT 0,
    pruned integer NOT NULL DEFAULT 0,
    unchanged integer NOT NULL DEFAULT 0,
    result text NOT NULL,  -- applied | failed (a sync with nothing to do leaves no row)
    error text
);

-- The UI and `nebula sync` show the latest runs of a source.
CREATE INDEX sync_runs_source_started_idx ON sync_runs (source, started_at DESC);
