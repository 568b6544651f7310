-- The lines of the target branch a rebased change replaces although the target branch had
-- changed them since the change was made (an edit made on main meanwhile, which approving the
-- change undoes): shown with its diff, so nobody undoes a newer edit unawares.
ALTER TABLE change_requests ADD COLUMN overrides jsonb NOT NULL DEFAULT '[]'::jsonb;
