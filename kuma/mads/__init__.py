"""Kuma's Monitoring Assignment Discovery Service (MADS v1): where Prometheus finds every
sidecar's metrics endpoint (its ``kuma_sd_configs``, kuma-cp port 5676)."""
