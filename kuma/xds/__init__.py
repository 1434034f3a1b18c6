"""xDS: Envoy resource generation (generate), the incremental engine and the ADS server."""
