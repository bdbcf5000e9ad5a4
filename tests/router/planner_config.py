"""The config the planner tests route against, built directly (no YAML) so each test file
shows exactly which tables exist.

shop (default backend ds0):
  users(id), orders(user_id), order_items(user_id): mod over 4 shards, bound; shards 0, 1 on
      ds0 and 2, 3 on ds1 (users_0 .. users_3)
  events(id): range [100, 200) -> 3 shards: events_0 on ds0, events_1 and events_2 on ds1
  tags(name): hash_mod over 2 shards, not bound to anything
  countries: broadcast on ds0 and ds1
  settings: single on ds0;  audit: single on ds1 as physical table audit_log
crm (default backend ds2):
  contacts: single on ds2
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router.algorithms import make_algorithm
from router.config import Backend, Config, Database, DataNode, Listener, Table, TableKind


def sharded(
    name: str,
    key: str,
    backends: tuple[str, ...],
    algorithm: str = "mod",
    params: Mapping[str, Any] | None = None,
) -> Table:
    """A sharded table with one physical table `<name>_<shard>` per entry of `backends`."""
    nodes = tuple(DataNode(backend, f"{name}_{i}") for i, backend in enumerate(backends))
    made = make_algorithm(algorithm, params or {}, len(nodes), name)
    return Table(name, TableKind.SHARDED, nodes, key, made, algorithm)


def make_config() -> Config:
    backends = {
        name: Backend(name, "127.0.0.1", 3306, "root", "", f"shop_{i}")
        for i, name in enumerate(("ds0", "ds1", "ds2"))
    }
    four = ("ds0", "ds0", "ds1", "ds1")
    shop_tables = [
        sharded("users", "id", four),
        sharded("orders", "user_id", four),
        sharded("order_items", "user_id", four),
        sharded("events", "id", ("ds0", "ds1", "ds1"), "range", {"boundaries": [100, 200]}),
        sharded("tags", "name", ("ds0", "ds1"), "hash_mod"),
        Table(
            "countries",
            TableKind.BROADCAST,
            (DataNode("ds0", "countries"), DataNode("ds1", "countries")),
        ),
        Table("settings", TableKind.SINGLE, (DataNode("ds0", "settings"),)),
        Table("audit", TableKind.SINGLE, (DataNode("ds1", "audit_log"),)),
    ]
    shop = Database(
        "shop",
        "ds0",
        {table.name: table for table in shop_tables},
        (frozenset({"users", "orders", "order_items"}),),
    )
    crm = Database(
        "crm",
        "ds2",
        {"contacts": Table("contacts", TableKind.SINGLE, (DataNode("ds2", "contacts"),))},
    )
    return Config(Listener(), {}, backends, {"shop": shop, "crm": crm})
