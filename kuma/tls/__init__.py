"""The control plane's TLS certificate: generated once and kept in the store, or given as
files; the server-side SSL contexts of the dp server and the HTTPS API."""
