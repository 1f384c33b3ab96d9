-- Store writes in progress, so GC finds an object whose row was never written (a crash
-- or a failed transaction between the store write and its record) without listing the
-- whole store (registry/gc.py). A key is recorded, in its own committed statement,
-- before the object is written, and removed by the transaction that records the blob.
CREATE TABLE storage_writes (
    key text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now()
);

-- When a collection last listed the whole store (the deep pass: objects that no row and
-- no recorded write names, e.g. left before this table existed). No row: never, so the
-- first collection after this migration lists it.
CREATE TABLE storage_sweeps (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    finished_at timestamptz NOT NULL
);
