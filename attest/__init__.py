"""Provenance: verify signatures and attestations, sign Zoll's own, keep the transparency log.

Works on OCI content through `registry.oci.reader.ContentReader` and imports nothing
else of the project, so auditors can run it offline.
"""
