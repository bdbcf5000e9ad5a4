"""Django's ORM through the proxy: `migrate`, then the client matrix scenario with the ORM.

Run by tests/integration/test_client_matrix.py in a subprocess (Django's settings are process
global): PROXY_PORT names the proxy. Prints the observations as one JSON line, in the shape of
the test's EXPECTED (values as text).
"""

from __future__ import annotations

import json
import os
import sys
from decimal import Decimal
from pathlib import Path

import django
from django.conf import settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
settings.configure(
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.mysql",
            "HOST": "127.0.0.1",
            "PORT": os.environ["PROXY_PORT"],
            "USER": "app",
            "PASSWORD": "app",
            "NAME": "matrix",
            "OPTIONS": {"charset": "utf8mb4"},
        }
    },
    INSTALLED_APPS=["matrixapp"],
    USE_TZ=False,
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import F, Value  # noqa: E402
from django.db.models.functions import Concat  # noqa: E402
from matrixapp.models import Item  # noqa: E402


def item(k: int) -> Item:
    return Item(k=k, name=f"item {k}", qty=k, price=Decimal(k) * Decimal("1.50"))


def rows(values) -> list[list[str | None]]:
    return [[None if v is None else str(v) for v in row] for row in values]


def by_key(values) -> list[list[str | None]]:
    return sorted(rows(values), key=lambda r: int(r[0]))


class Rollback(Exception):
    pass


def main() -> None:
    call_command("migrate", verbosity=0)
    seen: dict[str, object] = {}
    seen["inserted"] = len(Item.objects.bulk_create([item(k) for k in range(1, 9)]))
    seen["routed"] = rows(Item.objects.filter(k=3).values_list("name", "qty", "price"))
    seen["scatter"] = by_key(Item.objects.filter(qty__gte=2).values_list("k"))
    seen["ordered"] = rows(Item.objects.order_by("-k").values_list("k", "name")[:3])
    seen["count"] = [[str(Item.objects.count())]]
    seen["update_routed"] = Item.objects.filter(k=2).update(qty=F("qty") + 100)
    seen["update_scatter"] = Item.objects.filter(qty__lt=5).update(name=Concat("name", Value("!")))
    seen["delete_routed"] = Item.objects.filter(k=8).delete()[0]
    seen["delete_scatter"] = Item.objects.filter(qty__gt=100).delete()[0]
    with transaction.atomic():  # 9 on ds0, 10 on ds1
        item(9).save(force_insert=True)
        item(10).save(force_insert=True)
    try:
        with transaction.atomic():
            item(11).save(force_insert=True)
            Item.objects.filter(k__in=[9, 10]).update(qty=0)
            raise Rollback()
    except Rollback:
        pass
    seen["after_transactions"] = by_key(Item.objects.filter(k__gte=9).values_list("k"))
    Item.objects.create(k=12, name="item 12", qty=12, price=Decimal("18.00"))
    twelve = Item.objects.get(k=12)
    twelve.qty = 120
    twelve.save()
    names = connection.introspection.table_names()
    seen["tables"] = ["items"] if "matrixapp_item" in names else []
    with connection.cursor() as cursor:
        description = connection.introspection.get_table_description(cursor, "matrixapp_item")
        seen["columns"] = [c.name for c in description]
        cursor.execute("SELECT * FROM matrixapp_item WHERE k = 1")
        cursor.fetchall()
        seen["description"] = [d[0] for d in cursor.description]
    seen["final"] = by_key(Item.objects.values_list("k", "name", "qty", "price"))
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
