"""Kuma's builtin gateway (a Dataplane with ``networking.gateway.type: BUILTIN``): the Envoy
resources its MeshGateway and the MeshHTTPRoutes targeting that MeshGateway give it.

* :mod:`.hostnames`: Kuma's hostname matching and ordering (``match/hostnames.go``);
* :mod:`.routes`: the route table of each listener (virtual hosts, route entries);
* :mod:`.resources`: listeners, route configurations and clusters as Kuma builds them;
* :mod:`.assemble`: the engine's seam: a gateway proxy's assembly gets these resources, its
  backends' ClusterLoadAssignments (shared, patched like a sidecar's) and the selection keys
  (its MeshGateway, the routes) that re-assemble it.
"""
