-- The SBOMs a supplier attached to an image (SPDX, CycloneDX: referrers, cosign's .sbom
-- tag, SBOM attestations), read at scan time and compared with Zoll's own SBOM.
ALTER TABLE image_status ADD COLUMN supplier_sboms jsonb;
