"""MeshAccessLog's Tcp backend as Kuma's plugin (``tcpBackend`` in
``pkg/plugins/policies/meshaccesslog/plugin/xds/configurer.go``).

Envoy cannot send access logs over plain TCP, so Kuma has Envoy's *file* logger write one JSON
object per request, ``{"address": <backend address>, "message": <the formatted line>}``, to
kuma-dp's access-log pipe; kuma-dp's streamer (:mod:`kuma.dp.accesslogs`) reads the pipe and
sends each message to its address. The message is the default or plain format (newline
appended) as a string, or the JSON format's fields as an object.

The pipe's path: as Kuma's control plane, the node metadata's ``accessLogSocketPath`` (kuma-dp
sends it in its bootstrap request, ``KindPolicies.access_log_socket``), else Kuma's fallback
``AccessLogSocketName(<temp dir>, <name>, <mesh>)`` (:mod:`kuma.resources.accesslog_pipe`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2

if TYPE_CHECKING:
    from .meshaccesslog import TcpBackend

FILE_LOGGER = "envoy.access_loggers.file"


def tcp_access_log(
    backend: TcpBackend, default_format: str, interpolate: Callable[[str], str], pipe: str
) -> accesslog_pb2.AccessLog:
    """The file logger writing ``{address, message}`` lines to kuma-dp's pipe ``pipe``."""
    config = file_pb2.FileAccessLog(path=pipe)
    fields = config.log_format.json_format.fields
    fields["address"].string_value = backend.address
    fmt = backend.format
    if fmt is not None and fmt.plain is None and fmt.json is not None:
        message = fields["message"].struct_value.fields
        for pair in fmt.json:
            message[pair.key].string_value = interpolate(pair.value)
    else:
        text = fmt.plain if fmt is not None and fmt.plain is not None else default_format
        fields["message"].string_value = interpolate(text + "\n")
    # Kuma sets omitEmptyValues from the format only (not for the default format).
    if fmt is not None and fmt.omit_empty_values:
        config.log_format.omit_empty_values = True
    access_log = accesslog_pb2.AccessLog(name=FILE_LOGGER)
    access_log.typed_config.Pack(config)
    return access_log
