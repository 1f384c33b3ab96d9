-- The analysis work done for each pusher's images (seconds, bytes expanded), so the
-- pipeline can bound what one pusher costs per hour.
CREATE TABLE pipeline_work (
    id        bigserial PRIMARY KEY,
    pusher    text NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    digest    text NOT NULL,
    seconds   double precision NOT NULL,
    expanded  bigint NOT NULL
);
CREATE INDEX pipeline_work_pusher ON pipeline_work (pusher, at);
CREATE INDEX pipeline_work_at ON pipeline_work (at);
