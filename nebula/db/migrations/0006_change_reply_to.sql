-- Where a bot should report a change's moves: the chat channel it was asked for in
-- (e.g. "discord:<guild id>/<channel id>"); null for changes from the web or the CLI.
ALTER TABLE change_requests ADD COLUMN reply_to text;
