"""The read side behind ``GET /v1/metrics``: windows from the rollups, with the consistency rule."""
