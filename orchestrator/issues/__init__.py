"""Issue sets: JSONL files of issues with gold labels, their checks and splits, importers, GitHub."""
