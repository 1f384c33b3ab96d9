-- Helm charts are goods like images: a kind of their own in image_status. What an
-- artifact is (its artifactType, or its config media type) is kept so the rule that lets
-- an unjudged artifact through can be decided again when the namespace policy changes.
-- chart_images: the images each chart deploys (as the chart names them: source =
-- registry/repository, pinned = digest or tag) and the copy in this registry they resolve
-- to, so that an image's admission sends the charts waiting on it through admission again.
ALTER TABLE image_status DROP CONSTRAINT image_status_kind_check;
ALTER TABLE image_status ADD CONSTRAINT image_status_kind_check
    CHECK (kind IN ('image', 'index', 'artifact', 'chart'));
ALTER TABLE image_status ADD COLUMN artifact_type text;

CREATE TABLE chart_images (
    repository_id  bigint NOT NULL,
    digest         text NOT NULL,
    reference      text NOT NULL,
    source         text,
    pinned         text,
    image_repository text,
    image_digest   text,
    PRIMARY KEY (repository_id, digest, reference),
    FOREIGN KEY (repository_id, digest)
        REFERENCES manifests (repository_id, digest) ON DELETE CASCADE
);
CREATE INDEX chart_images_image ON chart_images (image_repository, image_digest);
CREATE INDEX chart_images_source ON chart_images (source, pinned);

-- The images a mirrored chart deploys are copied under the chart's entry: two of them may
-- share a reference (a tag) from different upstream repositories.
ALTER TABLE mirror_images DROP CONSTRAINT mirror_images_pkey;
ALTER TABLE mirror_images ADD PRIMARY KEY (set_name, entry, source, reference);
