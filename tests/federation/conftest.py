"""Federation fixtures: real images and a supplier's key (shared with the pipeline tests)."""

from tests.pipeline.conftest import builder, supplier  # noqa: F401  (fixtures)
