-- What each machine's node agent last reported: one row per agent identity, replaced on every
-- heartbeat. The NebulaNode controller matches these to declared nodes and fills their status.
CREATE TABLE node_heartbeats (
    node text PRIMARY KEY,                -- the name the agent reports as (a NebulaNode's name)
    hostname text NOT NULL,
    agent_version text NOT NULL,
    interval_seconds real NOT NULL,       -- how often this agent reports
    hardware jsonb NOT NULL,              -- nebula.resources.nebula_node.Hardware
    problems jsonb NOT NULL DEFAULT '[]', -- probes that failed, and why
    received_at timestamptz NOT NULL DEFAULT now()  -- the server's clock, not the agent's
);

-- Controllers LISTEN for heartbeats instead of polling the table.
CREATE FUNCTION nebula_notify_heartbeat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nebula_heartbeats', NEW.node);
    RETURN NULL;
END;
$$;

CREATE TRIGGER node_heartbeats_notify
    AFTER INSERT OR UPDATE ON node_heartbeats
    FOR EACH ROW EXECUTE FUNCTION nebula_notify_heartbeat();
