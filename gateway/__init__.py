"""The hall gateway: counter devices (MQTT) <-> queue system (webhook) <-> regional hub (HTTP).

Run it with `python -m gateway --config FILE`; `gateway.service.Gateway` is the assembly.
See docs/gateway.md.
"""
