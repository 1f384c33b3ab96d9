-- Web pages and badges (registry/ui): browser sessions, the vulnerability findings of
-- each image, and the terms the catalogue searches by.

-- A browser session after a login on /ui/login. The cookie holds a random token; only
-- its SHA-256 is stored, so a database reader cannot take over sessions. A session
-- ends on logout, at expires_at, when its principal is deleted, and when its secret
-- changes (secret_version, as bearer tokens carry it). csrf is the token every form
-- posted in this session must carry.
CREATE TABLE auth_sessions (
    token_hash      bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    principal_id    bigint NOT NULL REFERENCES auth_principals (id) ON DELETE CASCADE,
    secret_version  text NOT NULL,
    csrf            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    source          text
);
CREATE INDEX auth_sessions_expiry ON auth_sessions (expires_at);
CREATE INDEX auth_sessions_principal ON auth_sessions (principal_id);

-- Every vulnerability finding of the scan with its VEX status (policy.packages
-- VulnFinding.to_json), null when no vulnerability data was loaded.
ALTER TABLE image_status ADD COLUMN vulnerabilities jsonb;

-- What the catalogue search finds an image by besides its name and digest: installed
-- package names (lower case) and vulnerability ids with their aliases (upper case:
-- CVE-…, GHSA-…, DSA-…). Rewritten by each scan of the image.
CREATE TABLE image_search_terms (
    kind           text NOT NULL CHECK (kind IN ('package', 'vulnerability')),
    term           text COLLATE "C" NOT NULL,
    repository_id  bigint NOT NULL,
    digest         text NOT NULL,
    PRIMARY KEY (kind, term, repository_id, digest),
    FOREIGN KEY (repository_id, digest)
        REFERENCES image_status (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX image_search_terms_image ON image_search_terms (repository_id, digest);

-- The catalogue lists a repository's images newest first, a page at a time.
CREATE INDEX image_status_listing ON image_status (repository_id, created_at DESC, digest);
