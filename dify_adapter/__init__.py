"""The Dify adapter: an HTTP server with native and compatible APIs, and a Dify plugin (coming)."""
