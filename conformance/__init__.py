"""The memdock conformance kit: checks every backend must pass (coming)."""
