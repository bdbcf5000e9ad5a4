"""The I/O side of shardproxy: wire server, sessions, backend pools, executor."""
