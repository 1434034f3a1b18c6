"""Transparent proxying on a VM: the iptables rules ``kumactl install transparent-proxy`` puts
in place (and ``kumactl uninstall transparent-proxy`` takes away again).

* :mod:`.config`: the settings (Kuma's flags and defaults) and their checks;
* :mod:`.rules`: pure: settings → the rules of one IP family, as ``iptables-restore`` input;
* :mod:`.system`: the host side: the ``iptables-save``/``-restore`` tools, IPv6, resolv.conf;
* :mod:`.installer`: install (idempotent, atomic per family) and the exact uninstall.

The DNS half of transparent proxying (``<service>.mesh``) is served by Envoy itself, from a
listener the control plane generates (``kuma.xds.generate.dns``).
"""
