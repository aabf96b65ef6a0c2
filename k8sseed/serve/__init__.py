"""`k8sseed serve`: NoCloud seeds over HTTP (by name, MAC, serial, UUID), iPXE, ISOs, and bootstrap status."""
