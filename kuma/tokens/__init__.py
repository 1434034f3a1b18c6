"""Dataplane and zone tokens: Kuma's RS256 JWTs, their signing keys (stored as Secrets and
GlobalSecrets), issuing, verification with a cache, and the control plane's stream
authenticator that keeps every live stream's token under watch (expiry and revocation)."""
