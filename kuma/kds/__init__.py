"""KDS: Kuma's discovery service between control planes (global and its zones), spoken between
our own control planes: Kuma's service and method names, Envoy's delta xDS messages, resources
as canonical JSON (:mod:`.codec`). One concept per module: the codec, what travels which way
(:mod:`.mapping`), the outbox a sender reads (:mod:`.outbox`), the sending and receiving sides
of a stream (:mod:`.sender`, :mod:`.receiver`), the store a receiver writes (:mod:`.sink`),
zone authentication (:mod:`.auth`), global's server (:mod:`.server`) and a zone's client
(:mod:`.client`)."""
