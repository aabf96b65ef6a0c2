"""The host BIRD's router id, a function of the node's own address only."""

from __future__ import annotations

import ipaddress

ROUTER_ID_NETWORK = ipaddress.IPv4Network("100.127.0.0/16")


def bird_router_id(address: ipaddress.IPv4Address) -> str:
    """100.127.0.0/16 plus the node address's low 16 bits: the same for a node whatever other nodes the profile
    lists, so adding a node leaves every other node's bird.conf as it was. Never the node IP (calico-node's BIRD
    uses that): the profile checks refuse a node inside 100.127.0.0/16 and two BGP nodes with one id."""
    return str(ROUTER_ID_NETWORK.network_address + (int(address) & 0xFFFF))
