# Declares trading.emergency_close and the "operators" group that holds it.

from django.db import migrations


def operators_group_create(apps, schema_editor):
    from trading.operators import operators_group_ensure

    operators_group_ensure(apps=apps)


def operators_group_delete(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="operators").delete()


class Migration(migrations.Migration):

    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("trading", "0004_fills_ledger"),
        # The group also views these apps' records (their initial tables suffice).
        ("risk", "0001_initial"),
        ("monitoring", "0001_initial"),
        ("dashboard", "0001_initial"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="position",
            options={
                "ordering": ["-opened_at"],
                "permissions": [("emergency_close", "Can emergency-close every position")],
            },
        ),
        migrations.RunPython(operators_group_create, operators_group_delete),
    ]
