"""Kuma's builtin gateway (a Dataplane with ``networking.gateway.type: BUILTIN``): the Envoy
resources its MeshGateway and the MeshHTTPRoutes and MeshTCPRoutes targeting that MeshGateway
give it.

* :mod:`.selection`: which MeshGateway serves which Dataplane (Kuma's SelectGateway);
* :mod:`.hostnames`: Kuma's hostname matching and ordering (``match/hostnames.go``);
* :mod:`.routes`: the route table of each HTTP listener (virtual hosts, route entries) and the
  backends of each TCP listener;
* :mod:`.route_action`: a gateway route's matches and filters;
* :mod:`.resources`: listeners, route configurations and clusters as Kuma builds them;
* :mod:`.assemble`: the engine's seam: a gateway proxy's assembly gets these resources, its
  backends' ClusterLoadAssignments (shared, patched like a sidecar's) and the selection keys
  (its MeshGateway, the routes) that re-assemble it.
"""
