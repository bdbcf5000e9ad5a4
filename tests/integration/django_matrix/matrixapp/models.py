"""The matrix scenario's table as a Django model; `k` is the shard key (config: matrixapp_item)."""

from django.db import models


class Item(models.Model):
    k = models.BigIntegerField(primary_key=True)
    name = models.CharField(max_length=50)
    qty = models.IntegerField()
    price = models.DecimalField(max_digits=10, decimal_places=2, null=True)
