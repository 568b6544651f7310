-- Who is signed in to the web UI: one row per browser sign-in, deleted at sign-out. The cookie
-- holds a random id; only its sha256 is kept here, so a copy of this table opens no session.
CREATE TABLE web_sessions (
    id_hash text PRIMARY KEY,                       -- sha256 of the cookie's value, hex
    username text NOT NULL,                         -- a user of the users file
    csrf_token text NOT NULL,                       -- what the session's forms must send back
    started_at timestamptz NOT NULL DEFAULT now(),  -- the session ends LIFETIME after this
    seen_at timestamptz NOT NULL DEFAULT now()      -- and IDLE after this (kept to the minute)
);

-- Expired sessions are swept at each sign-in; this finds them without reading the live ones.
CREATE INDEX web_sessions_seen_at_idx ON web_sessions (seen_at);
