"""ORMs and their schema tools through the proxy: SQLAlchemy reflection (compared with the same
schema on one plain MariaDB), SQLAlchemy ORM create_all and CRUD on a sharded table, and
Django's inspectdb.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa
from shop_helpers import ShopTables
from sqlalchemy import orm

# orders and order_items are a binding group, so a foreign key between them holds per shard.
SCHEMA = {
    "orders": (
        "CREATE TABLE orders (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, "
        "status VARCHAR(20) NOT NULL DEFAULT 'new', total DECIMAL(10,2), created_at DATETIME, "
        "UNIQUE KEY uq_user_order (user_id, id), KEY ix_status (status))"
    ),
    "order_items": (
        "CREATE TABLE order_items (id BIGINT PRIMARY KEY, order_id BIGINT NOT NULL, "
        "user_id BIGINT NOT NULL, sku VARCHAR(40), qty INT, price DECIMAL(10,2), "
        "FOREIGN KEY (order_id) REFERENCES orders (id))"
    ),
    "countries": "CREATE TABLE countries (code CHAR(2) PRIMARY KEY, name VARCHAR(100))",
}


@pytest.fixture
def schema(shop_proxy, mariadb_cluster, reference_db) -> Iterator[None]:
    """SCHEMA created through the proxy and in the reference database."""
    tables = ShopTables(shop_proxy, mariadb_cluster)
    for name in ("order_items", "orders", "countries", "users", "settings"):
        tables.drop_physical(name)
        tables.created.append(name)
    conn = shop_proxy.connect()
    try:
        with conn.cursor() as cursor:
            for ddl in SCHEMA.values():
                cursor.execute(ddl)
    finally:
        conn.close()
    for ddl in SCHEMA.values():
        reference_db.execute(ddl)
    yield
    tables.cleanup()


def _engine(host: str, port: int, user: str, password: str, database: str) -> sa.Engine:
    url = f"mysql+pymysql://{user}:{password}@{host}:{port}/{database}?charset=utf8mb4"
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


@pytest.fixture
def engines(schema, shop_proxy, reference_db) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    proxy = _engine(shop_proxy.host, shop_proxy.port, "app", "app", "shop")
    ref = reference_db.instance
    reference = _engine(ref.host, ref.port, "root", "", reference_db.database)
    yield proxy, reference
    proxy.dispose()
    reference.dispose()


def _reflected(engine: sa.Engine) -> dict[str, object]:
    inspector = sa.inspect(engine)
    found: dict[str, object] = {"tables": inspector.get_table_names()}
    for table in SCHEMA:
        columns = [
            (c["name"], str(c["type"]), c["nullable"], c.get("default"))
            for c in inspector.get_columns(table)
        ]
        foreign = [
            (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"])
            for fk in inspector.get_foreign_keys(table)
        ]
        found[table] = {
            "columns": columns,
            "pk": inspector.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "foreign_keys": foreign,
        }
    return found


def test_sqlalchemy_reflection_as_reference(engines):
    proxy, reference = engines
    assert _reflected(proxy) == _reflected(reference)
    reflected = _reflected(proxy)
    assert reflected["order_items"]["foreign_keys"] == [(["order_id"], "orders", ["id"])]
    assert sa.inspect(proxy).has_table("orders")
    assert not sa.inspect(proxy).has_table("users")  # configured, but not created
    assert "shop" in sa.inspect(proxy).get_schema_names()


def test_sqlalchemy_metadata_reflect(engines):
    proxy, _ = engines
    metadata = sa.MetaData()
    metadata.reflect(proxy)
    assert sorted(metadata.tables) == sorted(SCHEMA)
    orders = metadata.tables["orders"]
    assert [c.name for c in orders.primary_key] == ["id"]
    items = metadata.tables["order_items"]
    (fk,) = items.foreign_keys
    assert fk.column.table is orders
    with proxy.connect() as conn:
        conn.execute(orders.insert(), [{"id": 1, "user_id": 7, "total": Decimal("9.50")}])
        conn.commit()
        row = conn.execute(sa.select(orders).where(orders.c.user_id == 7)).one()
        assert (row.id, row.status, row.total) == (1, "new", Decimal("9.50"))


class Base(orm.DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    name: orm.Mapped[str] = orm.mapped_column(sa.String(100))
    email: orm.Mapped[str | None] = orm.mapped_column(sa.String(200))
    orders: orm.Mapped[list[Order]] = orm.relationship(
        primaryjoin="User.id == foreign(Order.user_id)", back_populates="user"
    )


class Order(Base):
    __tablename__ = "orders"
    id: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    user_id: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, index=True)
    status: orm.Mapped[str] = orm.mapped_column(sa.String(20), default="new")
    total: orm.Mapped[Decimal] = orm.mapped_column(sa.Numeric(10, 2))
    user: orm.Mapped[User] = orm.relationship(
        primaryjoin="User.id == foreign(Order.user_id)", back_populates="orders"
    )


@pytest.fixture
def orm_engine(shop_proxy, mariadb_cluster) -> Iterator[sa.Engine]:
    tables = ShopTables(shop_proxy, mariadb_cluster)
    for name in ("users", "orders"):
        tables.drop_physical(name)
        tables.created.append(name)
    engine = _engine(shop_proxy.host, shop_proxy.port, "app", "app", "shop")
    yield engine
    engine.dispose()
    tables.cleanup()


def test_sqlalchemy_orm_create_all_and_crud(orm_engine):
    engine = orm_engine
    # create_all asks the proxy which tables exist, then creates users and orders through it.
    Base.metadata.create_all(engine)
    assert {"users", "orders"} <= set(sa.inspect(engine).get_table_names())
    Base.metadata.create_all(engine)  # a second time: everything exists, nothing to do

    with orm.Session(engine) as session:
        for uid in range(1, 7):
            user = User(id=uid, name=f"user {uid}", email=f"u{uid}@example.com")
            user.orders = [Order(id=uid * 10 + n, total=Decimal(n)) for n in range(1, 4)]
            session.add(user)
        session.commit()

    with orm.Session(engine) as session:
        user = session.get(User, 5)
        assert user is not None and user.name == "user 5"
        assert sorted(o.id for o in user.orders) == [51, 52, 53]
        assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 18
        order = session.scalars(sa.select(Order).where(Order.user_id == 3, Order.id == 32)).one()
        order.status = "paid"
        session.commit()

    with orm.Session(engine) as session:
        order = session.scalars(sa.select(Order).where(Order.user_id == 3, Order.id == 32)).one()
        assert order.status == "paid"
        session.delete(order)
        session.commit()
        remaining = session.scalars(
            sa.select(Order.id).where(Order.user_id == 3).order_by(Order.id)
        ).all()
        assert remaining == [31, 33]

    Base.metadata.drop_all(engine)
    assert not ({"users", "orders"} & set(sa.inspect(engine).get_table_names()))


DJANGO_SETTINGS = """\
import pymysql

# Django wants mysqlclient; PyMySQL stands in for it.
pymysql.version_info = (2, 2, 1, "final", 0)
pymysql.install_as_MySQLdb()
SECRET_KEY = "test"
USE_TZ = True
INSTALLED_APPS = []
DATABASES = {{"default": {{
    "ENGINE": "django.db.backends.mysql", "NAME": "shop", "USER": "app", "PASSWORD": "app",
    "HOST": "{host}", "PORT": "{port}",
}}}}
"""


def test_django_inspectdb(schema, shop_proxy, tmp_path):
    pytest.importorskip("django")
    (tmp_path / "proxy_settings.py").write_text(
        DJANGO_SETTINGS.format(host=shop_proxy.host, port=shop_proxy.port)
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "DJANGO_SETTINGS_MODULE": "proxy_settings"}
    done = subprocess.run(
        [sys.executable, "-m", "django", "inspectdb"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    models = done.stdout
    expected = textwrap.dedent(
        """\
        class Orders(models.Model):
            id = models.BigIntegerField(primary_key=True)
            user_id = models.BigIntegerField()
            status = models.CharField(max_length=20)
            total = models.DecimalField(max_digits=10, decimal_places=2, blank=True, null=True)
            created_at = models.DateTimeField(blank=True, null=True)
        """
    )
    assert expected in models
    assert "order = models.ForeignKey('Orders', models.DO_NOTHING)" in models
    assert "db_table = 'order_items'" in models
    assert "_0" not in models and "_1" not in models
