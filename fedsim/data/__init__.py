"""Bundled and generated data, local-folder loaders, and non-iid partitioning."""
