"""memdock-sqlite: a memdock backend on one SQLite file (``sqlite:///abs/path.db``)."""
