-- The last state of a change a bot posted about in its chat channel: each move is posted once,
-- whichever bot process and however often it restarts, and moves made while no bot listened
-- are posted when one starts. Changes decided before this column existed count as told.
ALTER TABLE change_requests ADD COLUMN announced_state text;
UPDATE change_requests SET announced_state = state WHERE reply_to IS NOT NULL;
