"""Plugin modules that tests register through ``plugins: [...]`` (imported by every worker)."""
