from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("live/", views.dashboard_live, name="dashboard_live"),
    path("position/<int:position_id>/", views.position_detail, name="dashboard_position"),
    path("close-everything/", views.close_everything, name="dashboard_close_everything"),
]
