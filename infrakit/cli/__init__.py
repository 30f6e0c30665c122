"""The `infrakit` command line."""
