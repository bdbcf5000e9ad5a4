"""The pure side of shardproxy: config model, shard algorithms, SQL analysis, rewrite, merge.

Nothing in this package does I/O or reads clocks: it takes SQL text, parameters, config and rows,
and returns plans and merged rows.
"""
