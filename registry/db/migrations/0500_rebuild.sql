-- What the rebuild stage found: the result (reproduced, differs with the diff, failed with
-- the reason) and the statement to sign about it.
ALTER TABLE image_status ADD COLUMN rebuild jsonb;
