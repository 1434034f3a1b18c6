"""Store plugins shipped with kuma-py; each registers under the ``kuma.stores`` entry-point group."""
