"""The config loader: good files build the model; each bad file names file, line, key and why."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from router.algorithms import Mod, Range
from router.config import DataNode, TableKind
from router.config_loader import describe, load_config, load_config_text
from router.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
YAML_FILES = sorted(CONFIG_DIR.rglob("*.yaml"))

# Eight lines; a case's tables start on line 9.
HEAD = """\
users: [{name: app, password: app}]
backends:
  ds0: {host: h0, port: 3306, user: root, database: d0}
  ds1: {host: h1, port: 3306, user: root, database: d1}
databases:
  shop:
    default_backend: ds0
    tables:
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "t.yaml", env or {})
    return info.value.problems


# -- files shipped under config/ -----------------------------------------------------------------


def test_config_dir_has_the_default_and_examples() -> None:
    names = {path.relative_to(CONFIG_DIR).as_posix() for path in YAML_FILES}
    assert "default.yaml" in names
    assert len([name for name in names if name.startswith("examples/")]) >= 2


def as_json(value: Any) -> Any:
    """What an editor's YAML language server validates: keys are strings, dates are text."""
    if isinstance(value, dict):
        return {str(key): as_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_json(item) for item in value]
    if isinstance(value, date):
        return value.isoformat()
    return value


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = json.loads((CONFIG_DIR / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda path: path.name)
def test_shipped_configs_validate_and_load(
    path: Path, validator: jsonschema.Draft202012Validator
) -> None:
    text = path.read_text()
    schema_ref = text.splitlines()[0]
    assert schema_ref.startswith("# yaml-language-server: $schema=")
    assert (path.parent / schema_ref.split("=", 1)[1]).resolve() == CONFIG_DIR / "schema.json"
    validator.validate(as_json(yaml.safe_load(text)))
    load_config(str(path), env={})


@pytest.mark.parametrize(
    "table",
    [
        {"shard_kye": "id", "algorithm": "mod", "backends": ["ds0"]},
        {"shard_key": "id", "algorithm": {"type": "range", "boundary": [1]}, "backends": ["ds0"]},
        {"shard_key": "id", "algorithm": "mod", "backends": ["ds0"], "nodes": ["ds0.t"]},
        {"broadcast": True, "shard_key": "id"},
        {"backnd": "ds0"},
    ],
)
def test_schema_rejects_what_the_loader_rejects(
    table: dict[str, Any], validator: jsonschema.Draft202012Validator
) -> None:
    config = yaml.safe_load(HEAD)
    config["databases"]["shop"]["tables"] = {"t": table}
    assert not validator.is_valid(config)
    with pytest.raises(ConfigError):
        load_config_text(yaml.safe_dump(config))


def test_default_config_model() -> None:
    config = load_config(str(CONFIG_DIR / "default.yaml"), env={})
    assert (config.listen.host, config.listen.port) == ("127.0.0.1", 3307)
    assert config.users["admin"].admin and not config.users["app"].admin
    assert config.users["app"].databases is None
    assert [(b.name, b.port, b.database) for b in config.backends.values()] == [
        ("ds0", 13306, "shop_0"),
        ("ds1", 13307, "shop_1"),
    ]
    shop = config.databases["shop"]
    orders = shop.tables["orders"]
    assert orders.kind is TableKind.SHARDED
    assert (orders.shard_key, orders.algorithm_name, orders.algorithm) == ("user_id", "mod", Mod(4))
    assert [str(node) for node in orders.nodes] == [
        "ds0.orders_0",
        "ds0.orders_1",
        "ds1.orders_2",
        "ds1.orders_3",
    ]
    assert orders.algorithm is not None
    assert str(orders.nodes[orders.algorithm.shard_for(7)]) == "ds1.orders_3"
    assert shop.tables["countries"].nodes == (
        DataNode("ds0", "countries"),
        DataNode("ds1", "countries"),
    )
    assert shop.tables["settings"].kind is TableKind.SINGLE
    assert shop.tables["settings"].nodes == (DataNode("ds1", "settings"),)
    assert shop.binding_groups == (frozenset({"users", "orders", "order_items"}),)


# -- good texts ----------------------------------------------------------------------------------


def test_describe_shows_what_was_understood_without_passwords() -> None:
    text = """\
listen: {port: 4000}
users:
  - {name: app, password: topsecret1, databases: [shop]}
  - {name: root, password: topsecret2, admin: true}
backends:
  ds0: {host: h0, port: 3306, user: proxy, password: topsecret3, database: d0}
  ds1: {host: h1, port: 3307, user: proxy, database: d1, pool: {min: 1, max: 8}}
databases:
  shop:
    default_backend: ds0
    tables:
      orders:  {shard_key: user_id, algorithm: hash_mod, backends: [ds0, ds1], tables_per_backend: 2}
      items:   {shard_key: user_id, algorithm: hash_mod, backends: [ds0, ds1], tables_per_backend: 2}
      regions: {shard_key: region_id, algorithm: {type: range, boundaries: [100]}, backends: [ds0, ds1]}
      countries: {broadcast: true}
      settings: {backend: ds1}
    binding: [[orders, items]]
"""  # noqa: E501
    assert describe(load_config_text(text, "t.yaml")) == (
        "config t.yaml\n"
        "listen 127.0.0.1:4000\n"
        "users:\n"
        "  app: shop\n"
        "  root: all databases, admin\n"
        "backends:\n"
        "  ds0: proxy@h0:3306/d0 (pool 0..32)\n"
        "  ds1: proxy@h1:3307/d1 (pool 1..8)\n"
        "database shop (default backend ds0):\n"
        "  orders     sharded by user_id (hash_mod, 4 shards):"
        " ds0.orders_0 ds0.orders_1 ds1.orders_2 ds1.orders_3\n"
        "  items      sharded by user_id (hash_mod, 4 shards):"
        " ds0.items_0 ds0.items_1 ds1.items_2 ds1.items_3\n"
        "  regions    sharded by region_id (range [100], 2 shards): ds0.regions ds1.regions\n"
        "  countries  broadcast: ds0.countries ds1.countries\n"
        "  settings   single: ds1.settings\n"
        "  binding group: orders, items"
    )


def test_names_case_and_explicit_nodes() -> None:
    config = load_config_text(
        HEAD.replace("  shop:", "  Shop:")
        + "      Orders: {shard_key: User_ID, algorithm: mod, nodes: [ds1.Ord_A, ds0.ord_b]}\n"
        + "      audit: {physical: audit_v2}\n"
        + "      notes:\n"
    )
    shop = config.databases["Shop"]  # database names as written
    orders = shop.tables["orders"]  # table and column names lower case
    assert orders.shard_key == "user_id"
    assert orders.nodes == (DataNode("ds1", "Ord_A"), DataNode("ds0", "ord_b"))
    assert orders.backends == ("ds1", "ds0")
    assert shop.tables["audit"].nodes == (DataNode("ds0", "audit_v2"),)
    assert shop.tables["notes"].nodes == (DataNode("ds0", "notes"),)  # empty: single, default


def test_one_table_per_backend_keeps_the_logical_name() -> None:
    config = load_config_text(
        HEAD + "      posts: {shard_key: id, algorithm: hash_mod, backends: [ds1, ds0]}\n"
    )
    assert config.databases["shop"].tables["posts"].nodes == (
        DataNode("ds1", "posts"),
        DataNode("ds0", "posts"),
    )


def test_broadcast_defaults_to_the_backends_the_database_uses() -> None:
    text = """\
users: [{name: app, password: app}]
backends:
  ds0: {host: h, port: 1, user: u, database: d0}
  ds1: {host: h, port: 1, user: u, database: d1}
  ds2: {host: h, port: 1, user: u, database: d2}
databases:
  shop:
    default_backend: ds2
    tables:
      countries: {broadcast: true}
      orders: {shard_key: id, algorithm: mod, backends: [ds1]}
"""
    table = load_config_text(text).databases["shop"].tables["countries"]
    assert table.nodes == (DataNode("ds1", "countries"), DataNode("ds2", "countries"))


def test_environment_interpolation() -> None:
    text = """\
listen: {port: "${PROXY_PORT}"}
users:
  - {name: app, password: "${APP_PW}"}
  - {name: b, password: "${UNSET:-fallback}"}
  - {name: c, password: "${EMPTY:-when empty too}"}
  - {name: d, password: "a$${LITERAL}b$c"}
backends:
  ds0: {host: "${DB_HOST:-localhost}", port: 3306, user: root, database: d0}
databases: {}
"""
    env = {"PROXY_PORT": "4001", "APP_PW": "s3cret", "EMPTY": "", "DB_HOST": "db"}
    config = load_config_text(text, env=env)
    assert config.listen.port == 4001
    assert [user.password for user in config.users.values()] == [
        "s3cret",
        "fallback",
        "when empty too",
        "a${LITERAL}b$c",
    ]
    assert config.backends["ds0"].host == "db"


def test_merge_keys_and_anchors() -> None:
    text = """\
users: [{name: app, password: app}]
backends:
  ds0: &server {host: h0, port: 3306, user: root, database: d0}
  ds1: {<<: *server, database: d1}
databases: {}
"""
    backends = load_config_text(text).backends
    assert (backends["ds1"].host, backends["ds1"].database) == ("h0", "d1")


def test_range_on_dates_from_yaml() -> None:
    config = load_config_text(
        HEAD + "      logs: {shard_key: day, algorithm: {type: range, boundaries: [2024-01-01]},"
        " backends: [ds0, ds1]}\n"
    )
    algorithm = config.databases["shop"].tables["logs"].algorithm
    assert algorithm == Range(("2024-01-01",))
    assert algorithm.shard_for("2024-03-05") == 1


# -- bad texts: each problem exactly --------------------------------------------------------------

BAD_TABLES = [
    pytest.param(
        "      orders: {shard_kye: user_id, algorithm: mod, backends: [ds0]}\n",
        [
            "t.yaml:9: databases.shop.tables.orders.shard_kye: unknown key"
            " (did you mean shard_key?)",
            "t.yaml:9: databases.shop.tables.orders.shard_key: required key is missing"
            " for a sharded table",
        ],
        id="typo",
    ),
    pytest.param(
        """\
      regions:
        shard_key: region_id
        algorithm:
          type: range
          boundaries: [100]
        backends: [ds0, ds1]
        tables_per_backend: 2
""",
        [
            "t.yaml:13: databases.shop.tables.regions.algorithm.boundaries:"
            " 1 boundary makes 2 shards, but the table has 4 data nodes"
        ],
        id="shard-count",
    ),
    pytest.param(
        """\
      regions:
        shard_key: region_id
        algorithm: {type: list, values: {0: [de, no]}}
        backends: [ds0, ds1]
""",
        [
            "t.yaml:11: databases.shop.tables.regions.algorithm.values: shard 0: False is a"
            " boolean; quote it (YAML reads yes/no/on/off as booleans)"
        ],
        id="norway",
    ),
    pytest.param(
        "      orders: {shard_key: id, algorithm: hashmod, backends: [ds0]}\n",
        [
            "t.yaml:9: databases.shop.tables.orders.algorithm: unknown algorithm 'hashmod'"
            " (known: hash_mod, list, mod, range)"
        ],
        id="unknown-algorithm",
    ),
    pytest.param(
        "      orders: {shard_key: id, algorithm: {type: mod, n: 4}, backends: [ds0]}\n",
        [
            "t.yaml:9: databases.shop.tables.orders.algorithm.n:"
            " unknown parameter 'n' (mod takes no parameters)"
        ],
        id="algorithm-param",
    ),
    pytest.param(
        """\
      orders:
        shard_key: id
        algorithm: mod
        backends:
          - ds0
          - ds9
""",
        [
            "t.yaml:14: databases.shop.tables.orders.backends[1]: unknown backend 'ds9'"
            " (known: ds0, ds1)"
        ],
        id="unknown-backend",
    ),
    pytest.param(
        "      orders: {shard_key: id, algorithm: mod, backends: [ds0, ds0]}\n",
        ["t.yaml:9: databases.shop.tables.orders.backends[1]: backend 'ds0' is listed twice"],
        id="backend-twice",
    ),
    pytest.param(
        "      orders: {shard_key: id, algorithm: mod, nodes: [ds0.a, ds1], backends: [ds0]}\n",
        [
            "t.yaml:9: databases.shop.tables.orders.nodes:"
            " use either nodes or backends (with tables_per_backend), not both"
        ],
        id="nodes-and-backends",
    ),
    pytest.param(
        "      orders: {shard_key: id, algorithm: mod, nodes: [ds0.a, ds1, ds0.a]}\n",
        [
            "t.yaml:9: databases.shop.tables.orders.nodes[1]: expected backend.table, got 'ds1'",
            "t.yaml:9: databases.shop.tables.orders.nodes[2]: ds0.a is listed twice",
        ],
        id="bad-nodes",
    ),
    pytest.param(
        "      orders: {algorithm: mod}\n",
        [
            "t.yaml:9: databases.shop.tables.orders.shard_key: required key is missing"
            " for a sharded table",
            "t.yaml:9: databases.shop.tables.orders.backends: a sharded table needs"
            " backends or nodes",
        ],
        id="sharded-incomplete",
    ),
    pytest.param(
        "      countries: {broadcast: true, shard_key: code}\n",
        [
            "t.yaml:9: databases.shop.tables.countries.shard_key:"
            " not allowed for a broadcast table (expected one of: broadcast, backends)"
        ],
        id="broadcast-with-key",
    ),
    pytest.param(
        "      settings: {backend: ds1, tables_per_backend: 2, shard_key: id, algorithm: mod}\n",
        [
            "t.yaml:9: databases.shop.tables.settings.backend:"
            " not allowed for a sharded table (did you mean backends?)",
            "t.yaml:9: databases.shop.tables.settings.backends:"
            " a sharded table needs backends or nodes",
        ],
        id="single-key-on-sharded",
    ),
    pytest.param(
        "      orders: {backend: ds0}\n      Orders: {backend: ds1}\n",
        [
            "t.yaml:10: databases.shop.tables.Orders: duplicate table 'orders'"
            " (first at line 9; names are case-insensitive)"
        ],
        id="case-duplicate",
    ),
    pytest.param(
        "      orders: {backend: ds0}\n      legacy: {physical: ORDERS}\n",
        [
            "t.yaml:10: databases.shop.tables.legacy: ds0.ORDERS is also a data node of"
            " shop.orders (line 9)"
        ],
        id="physical-clash",
    ),
    pytest.param(
        "      orders: {backend: ds0}\n      orders: {backend: ds1}\n",
        ["t.yaml:10: databases.shop.tables.orders: duplicate key (first at line 9)"],
        id="duplicate-yaml-key",
    ),
    pytest.param(
        "      my.table: {}\n",
        [
            "t.yaml:9: databases.shop.tables.my.table: 'my.table' is not a valid name"
            " (no '.', '`' or spaces)"
        ],
        id="dotted-name",
    ),
]


@pytest.mark.parametrize(("tables", "expected"), BAD_TABLES)
def test_bad_tables(tables: str, expected: list[str]) -> None:
    assert problems(HEAD + tables) == expected


BINDING_TABLES = """\
      orders: {shard_key: user_id, algorithm: mod, backends: [ds0, ds1], tables_per_backend: 2}
      items:  {shard_key: user_id, algorithm: mod, backends: [ds0, ds1], tables_per_backend: 2}
      hashed: {shard_key: user_id, algorithm: hash_mod, backends: [ds0, ds1], tables_per_backend: 2}
      swapped: {shard_key: user_id, algorithm: mod, backends: [ds1, ds0], tables_per_backend: 2}
      countries: {broadcast: true}
"""


@pytest.mark.parametrize(
    ("binding", "expected"),
    [
        ("[[orders, items]]", []),
        (
            "[[orders, hashed]]",
            "binding[0][1]: hashed uses hash_mod over 4 nodes, orders uses mod over 4:"
            " bound tables need the same algorithm and node count",
        ),
        (
            "[[orders, swapped]]",
            "binding[0][1]: swapped shard 0 is on ds1 but orders shard 0 is on ds0:"
            " bound tables must be co-located",
        ),
        (
            "[[orders, countries]]",
            "binding[0][1]: countries is a broadcast table; only sharded tables bind",
        ),
        ("[[orders, nosuch]]", "binding[0][1]: unknown table 'nosuch'"),
        ("[[orders]]", "binding[0]: a binding group needs at least two tables"),
        (
            "[[orders, items], [items, orders]]",
            "binding[1][0]: items is already in binding group databases.shop.binding[0]",
        ),
    ],
)
def test_binding_groups(binding: str, expected: str | list[str]) -> None:
    text = HEAD + BINDING_TABLES + f"    binding: {binding}\n"
    if expected == []:
        assert load_config_text(text).databases["shop"].binding_groups == (
            frozenset({"orders", "items"}),
        )
    else:
        assert problems(text)[0] == f"t.yaml:14: databases.shop.{expected}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "listen: {port: 3307}\n",
            [
                "t.yaml:1: users: required key is missing",
                "t.yaml:1: backends: required key is missing",
                "t.yaml:1: databases: required key is missing",
            ],
            id="missing-sections",
        ),
        pytest.param("", ["t.yaml:1: (top level): the file is empty"], id="empty"),
        pytest.param(
            "- a\n- b\n",
            ["t.yaml:1: (top level): expected a mapping, got a list"],
            id="not-a-mapping",
        ),
        pytest.param(
            "users: [{name: app}\nbackends: {}\n",
            [
                "t.yaml:2: (yaml): while parsing a flow sequence,"
                " expected ',' or ']', but got '<scalar>'"
            ],
            id="syntax",
        ),
        pytest.param(
            HEAD.replace("port: 3306, user: root, database: d0", "port: 70000, user: root")
            .replace("port: 3306", 'port: "3306"')
            .replace("databases:\n", "databases:\n  other: {default_backend: ds7}\n"),
            [
                "t.yaml:3: backends.ds0.database: required key is missing",
                "t.yaml:3: backends.ds0.port: 70000 is out of range (must be 1..65535)",
                "t.yaml:4: backends.ds1.port: expected an integer, got string '3306'"
                " (remove the quotes)",
                "t.yaml:6: databases.other.default_backend: unknown backend 'ds7'"
                " (known: ds0, ds1)",
            ],
            id="collects-all",
        ),
        pytest.param(
            HEAD.replace(
                "users: [{name: app, password: app}]",
                "users: [{name: app, password: no, databases: [shop, nope]}, {name: b, passwd: x}]",
            ),
            [
                "t.yaml:1: users[0].password: expected a string, got boolean false"
                " (quote it: YAML reads yes/no/on/off/true/false as booleans)",
                "t.yaml:1: users[0].databases[1]: unknown database 'nope' (known: shop)",
                "t.yaml:1: users[1].passwd: unknown key (did you mean password?)",
                "t.yaml:1: users[1].password: required key is missing",
            ],
            id="users",
        ),
        pytest.param(
            "users: [{name: a, password: a}, {name: a, password: b}]\n"
            "backends: {ds0: {host: h, port: 1, user: u, database: d, pool: {min: 9, max: 2}}}\n"
            "databases: {}\n",
            [
                "t.yaml:1: users[1].name: duplicate user 'a' (first at line 1)",
                "t.yaml:2: backends.ds0.pool: min (9) is larger than max (2)",
            ],
            id="duplicate-user-and-pool",
        ),
        pytest.param(
            HEAD.replace("user: root, database: d0", 'user: "${DB_USER}", database: "${X"'),
            [
                "t.yaml:3: backends.ds0.user: environment variable DB_USER is not set",
                "t.yaml:3: backends.ds0.database: malformed ${...}:"
                " write ${NAME} or ${NAME:-default}",
            ],
            id="environment",
        ),
        pytest.param(
            "userz: []\nusers: [{name: a, password: a}]\nbackends: {}\ndatabases: {}\n",
            [
                "t.yaml:1: userz: unknown key (did you mean users?)",
                "t.yaml:3: backends: at least one backend is required",
            ],
            id="top-level-typo",
        ),
    ],
)
def test_bad_files(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_deadlock_check_after_takes_seconds_whole_or_fractional() -> None:
    assert load_config_text(HEAD).transactions.deadlock_check_after == 1.0
    for text, seconds in (("0.25", 0.25), ("3", 3.0), ("0", 0.0)):
        config = load_config_text(HEAD + f"transactions: {{deadlock_check_after: {text}}}\n")
        assert config.transactions.deadlock_check_after == seconds
    assert problems(HEAD + "transactions: {deadlock_check_after: -1}\n") == [
        "t.yaml:9: transactions.deadlock_check_after: -1 is out of range (must be >= 0)"
    ]
    assert problems(HEAD + "transactions: {deadlock_check_after: soon}\n") == [
        "t.yaml:9: transactions.deadlock_check_after: expected a number of seconds,"
        " got string 'soon'"
    ]


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "proxy.yaml"
    path.write_text(HEAD + "      t: {backend: nope}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert info.value.problems == [
        f"{path}:9: databases.shop.tables.t.backend: unknown backend 'nope' (known: ds0, ds1)"
    ]


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/nonexistent/proxy.yaml")
    assert info.value.problems[0].startswith("/nonexistent/proxy.yaml: (file): cannot read it:")


def test_listen_workers() -> None:
    assert load_config_text(HEAD).listen.workers == 1
    config = load_config_text("listen: {workers: 4}\n" + HEAD)
    assert config.listen.workers == 4
    assert "(4 worker processes)" in describe(config)
    assert problems("listen: {workers: 0}\n" + HEAD) == [
        "t.yaml:1: listen.workers: 0 is out of range (must be 1..64)"
    ]
    pinned = "listen: {workers: 3}\ntransactions: {worker_id: 1022}\n" + HEAD
    assert problems(pinned) == [
        "t.yaml:2: transactions.worker_id: with listen.workers: 3, worker ids 1022..1024"
        " must stay below 1024"
    ]
    assert load_config_text(pinned.replace("1022", "1021")).transactions.worker_id == 1021
