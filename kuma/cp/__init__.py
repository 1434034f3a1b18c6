"""The kuma-cp process: configuration, start-up, the component runtime and shutdown."""
