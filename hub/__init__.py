"""The regional hub: receives services and signed ratings from hall gateways (docs/hub.md).

`create_app(settings)` in `hub.app` builds the FastAPI app; `hub.server` runs it; `python -m hub`.
"""
