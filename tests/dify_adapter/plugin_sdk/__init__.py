"""The Dify plugin with the real `dify_plugin` SDK, in a pytest process of its own (see tests/conftest.py)."""
