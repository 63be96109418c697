"""A site gateway: relays the data and status messages of a site's nodes, taken from the
site's own broker, to the cloud in bundles (urbanpulse.wire.relay), and the cloud's
acknowledgements back to the nodes (docs/gateway.md)."""
