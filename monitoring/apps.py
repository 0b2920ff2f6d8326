from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    name = "monitoring"

    def ready(self) -> None:
        from core.notify import alert_sink_register
        from monitoring import checks  # noqa: F401  (registers the start-up checks)
        from monitoring.services import alert_raise

        # Lower layers raise alerts through the port; monitoring stores and delivers them.
        alert_sink_register(alert_raise)
