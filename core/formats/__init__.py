"""Wire formats shared by a backend and an adapter: mem0's items (`memdock.formats.mem0`) and Dify's
metadata conditions (`memdock.formats.dify`). Each module only converts; none performs I/O."""
