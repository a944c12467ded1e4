"""Shared pieces of haochaping: the v1 wire contract (`hcp.protocol`) and the `hcp` command."""

__version__ = "0.1.0"
