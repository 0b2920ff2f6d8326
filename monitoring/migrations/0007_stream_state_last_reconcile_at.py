from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("monitoring", "0006_exchange_view"),
    ]

    operations = [
        migrations.AddField(
            model_name="streamstate",
            name="last_reconcile_at",
            field=models.DateTimeField(
                blank=True, help_text="When its latest REST reconcile finished.", null=True
            ),
        ),
    ]
