"""Command-line entry points: empo-data, empo-model, empo-train."""
