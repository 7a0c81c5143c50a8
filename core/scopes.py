"""The names of a scope's ids, in the order memdock lists them everywhere (no dependencies, so that
argument parsers can name them without importing the models)."""

SCOPE_FIELDS: tuple[str, ...] = ("user_id", "agent_id", "run_id", "app_id")
