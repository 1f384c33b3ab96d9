-- What an auditor needs to trace a verdict (docs/transparency-log.md, docs/pipeline.md).
--
-- 1. Which log entries are about an image. Attestation leaves are linked through their
--    attestations row (repository, subject_digest); every other leaf (an admission
--    decision) names the image it is about here, written with the leaf in the same
--    transaction.
ALTER TABLE tlog_leaves
    ADD COLUMN subject_repository text,
    ADD COLUMN subject_digest text,
    ADD CHECK ((subject_repository IS NULL) = (subject_digest IS NULL));

UPDATE tlog_leaves
   SET subject_repository = convert_from(body, 'UTF8')::jsonb #>> '{subject,repository}',
       subject_digest = convert_from(body, 'UTF8')::jsonb #>> '{subject,digest}'
 WHERE kind = 'admission';

CREATE INDEX tlog_leaves_subject ON tlog_leaves (subject_digest, subject_repository)
    WHERE subject_digest IS NOT NULL;
CREATE INDEX attestations_repository_subject ON attestations (repository, subject_digest);

-- 2. Every trust policy document that was ever in force, by the SHA-256 the VSAs name:
--    the policy file and every file it refers to (keys, layouts, links), so a VSA's
--    policy digest can be checked long after the policy changed.
CREATE TABLE trust_policy_documents (
    sha256      text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    document    bytea NOT NULL,
    first_used  timestamptz NOT NULL DEFAULT now()
);
