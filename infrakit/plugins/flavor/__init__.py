"""Built-in flavor plugins: `vanilla` (Init lines, tags and an optional health command)."""
