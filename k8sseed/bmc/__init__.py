"""Baseboard management controllers: attach a node's seed ISO as Redfish virtual media (`k8sseed attach`)."""
