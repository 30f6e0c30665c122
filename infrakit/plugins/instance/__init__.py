"""Built-in instance plugins: `file` (JSON files, for trying things out) and `process`."""
