-- What each running chat bot last reported about the BotConfig it runs with: one row per
-- (BotConfig, bot), replaced on every report. The BotConfig controller turns these into the
-- BotConfig's status (Ready only when every configured bot applied the current generation).
CREATE TABLE bot_reports (
    namespace text NOT NULL,              -- the BotConfig's namespace
    name text NOT NULL,                   -- the BotConfig's name
    bot text NOT NULL,                    -- discord | twitch | youtube | kick
    applied_generation bigint,            -- the BotConfig generation the bot runs with; null: none yet
    connected boolean NOT NULL,           -- whether the bot is connected to its platform
    message text NOT NULL DEFAULT '',     -- what went wrong applying, empty when all is well
    received_at timestamptz NOT NULL DEFAULT now(),  -- the database's clock, not the bot's
    PRIMARY KEY (namespace, name, bot)
);

-- Controllers LISTEN for reports instead of polling the table (payload: namespace/name).
CREATE FUNCTION nebula_notify_bot_report() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nebula_bot_reports', NEW.namespace || '/' || NEW.name);
    RETURN NULL;
END;
$$;

CREATE TRIGGER bot_reports_notify
    AFTER INSERT OR UPDATE ON bot_reports
    FOR EACH ROW EXECUTE FUNCTION nebula_notify_bot_report();
