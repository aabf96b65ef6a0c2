"""Carriers: one module per first-boot agent, each rendering a NodeConfig into that agent's format."""
