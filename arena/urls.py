from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "arena · trading control plane"
admin.site.site_title = "arena"
admin.site.index_title = "Rules, positions and monitoring"

urlpatterns = [
    path("admin/dashboard/", include("dashboard.urls")),
    path("admin/", admin.site.urls),
    path("", RedirectView.as_view(url="/admin/dashboard/", permanent=False)),
]
