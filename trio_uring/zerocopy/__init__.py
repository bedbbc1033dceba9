"""Zero-copy receive: ZeroCopyReceiver, buffer leases, the three receive modes, NIC doctor."""
