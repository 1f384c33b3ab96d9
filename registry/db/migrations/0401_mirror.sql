-- Mirror sets as applied, their entries with schedule and last result, and what each
-- entry brought in (the upstream origin of every mirrored image).

CREATE TABLE mirror_sets (
    name        text PRIMARY KEY,
    document    jsonb NOT NULL,
    sha256      text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE mirror_entries (
    set_name     text NOT NULL REFERENCES mirror_sets (name) ON DELETE CASCADE,
    name         text NOT NULL,
    next_run_at  timestamptz NOT NULL DEFAULT now(),
    last_run_at  timestamptz,
    last_result  jsonb,
    last_error   text,
    PRIMARY KEY (set_name, name)
);

CREATE TABLE mirror_images (
    set_name       text NOT NULL,
    entry          text NOT NULL,
    source         text NOT NULL,
    reference      text NOT NULL,
    repository     text NOT NULL,
    digest         text NOT NULL,
    bytes_fetched  bigint NOT NULL DEFAULT 0,
    blobs_fetched  integer NOT NULL DEFAULT 0,
    blobs_reused   integer NOT NULL DEFAULT 0,
    mirrored_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (set_name, entry, reference)
);
