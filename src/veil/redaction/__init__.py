"""veil redaction."""
