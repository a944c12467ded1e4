"""The hub's HTTP API: routes under `routes/`, shared dependencies in `deps`, shapes in `models`."""
