"""What a process is built from: settings (the one reader of the environment), AWS clients,
the container that builds every client and service once, the pipeline configuration
(``pipeline.toml``) and the SnapStart hooks.

Layer: the top of ``chalicelib`` (only ``app.py`` is above it).
"""
