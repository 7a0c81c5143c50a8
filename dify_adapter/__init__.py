"""The adapters that expose whichever backend is selected: `server` (``memdock serve``: the native API,
Dify's External Knowledge API, mem0's server and mem0ai-api dialects), `plugin_logic` (what the Dify
plugin's tools and endpoint do, without importing the Dify SDK), `packaging` (``memdock dify package``)
and `plugin/` (the plugin's files, shipped as they are). `commands` adds their CLI subcommands."""
