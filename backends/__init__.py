"""Built-in memdock backends. Each module is a pluggy plugin registered through the ``memdock``
entry-point group, exactly like a third-party backend."""
