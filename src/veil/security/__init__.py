"""Security signals and events (see docs/security/)."""
