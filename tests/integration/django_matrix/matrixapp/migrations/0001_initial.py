from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []

    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("k", models.BigIntegerField(primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=50)),
                ("qty", models.IntegerField()),
                ("price", models.DecimalField(decimal_places=2, max_digits=10, null=True)),
            ],
        ),
    ]
