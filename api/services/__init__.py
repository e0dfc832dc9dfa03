"""The use cases: authorized reads and writes, paging cursors, the request's context."""
