"""Pure renderers: markdown, CSV, JSON, PNG and DOT from analysis results. Nothing here writes a file."""
