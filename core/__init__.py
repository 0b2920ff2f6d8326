"""The bottom layer: leases, heartbeats, the watchers' rules, the base error, one decimal
formatter and the notification port. It imports no other project app."""
