"""Store plugins shipped with kuma-py, each registered in the ``kuma.stores`` entry-point group."""
