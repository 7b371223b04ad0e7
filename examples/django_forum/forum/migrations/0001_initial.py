from __future__ import annotations

from django.contrib.auth.hashers import make_password
from django.db import migrations, models

DEMO = {"username": "alice", "email": "alice@example.com", "password": "modx-forum"}


def demo_user(apps, schema_editor):  # type: ignore[no-untyped-def]
    user_model = apps.get_model("auth", "User")
    user_model.objects.get_or_create(
        username=DEMO["username"],
        defaults={"email": DEMO["email"], "password": make_password(DEMO["password"])},
    )


class Migration(migrations.Migration):
    initial = True
    dependencies = [("auth", "0012_alter_user_first_name_max_length")]

    operations = [
        migrations.CreateModel(
            name="Post",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("forum", models.SlugField()),
                ("author", models.CharField(max_length=80)),
                ("email", models.EmailField(max_length=254)),
                ("body", models.TextField()),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
            options={"ordering": ["-created"]},
        ),
        migrations.CreateModel(
            name="Ticket",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("email", models.EmailField(max_length=254)),
                ("phone", models.CharField(blank=True, max_length=40)),
                ("subject", models.CharField(max_length=200)),
                ("body", models.TextField()),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.RunPython(demo_user, migrations.RunPython.noop),
    ]
