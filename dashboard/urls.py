from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("close-everything/", views.close_everything, name="dashboard_close_everything"),
]
