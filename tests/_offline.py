"""Keep the test suite off the network, in this process and in the ones it starts.

Two layers, both installed by the conftest files:

- `OFFLINE_ENV`, set in `os.environ` before anything is imported, so every library and every
  subprocess sees it: HTTP(S) proxies pointing at the discard port on loopback (urllib,
  requests, libcurl under TensorFlow's GCS filesystem and gRPC all honour them, so a request to
  any outside host is refused at once), the GCE metadata server moved to the same dead port
  (TensorFlow's GCS auth, `TPUClusterResolver`, google-auth), no GCE probe and no retries in
  TensorFlow's GCS client, one try in tfds. Loopback stays direct (`NO_PROXY`), so the
  multi-worker tests can still talk to their local gRPC servers.
- `block_outbound(monkeypatch)`, used by an autouse fixture: any Python `socket.connect` that
  would leave the machine raises `NetworkBlockedError`, any such name lookup
  `LookupBlockedError` (a `socket.gaierror`, what an offline machine raises), naming the host.

Usage in a conftest::

    from tests._offline import OFFLINE_ENV, block_outbound
    os.environ.update(OFFLINE_ENV)

    @pytest.fixture(autouse=True)
    def _no_network(monkeypatch):
        block_outbound(monkeypatch)
"""

from __future__ import annotations

import ipaddress
import socket

DEAD_ENDPOINT = "127.0.0.1:9"  # the discard port: nothing listens there, connections are refused

_LOCAL = "localhost,127.0.0.1,::1"

OFFLINE_ENV = {
    **{name: f"http://{DEAD_ENDPOINT}" for name in (
        "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy",
        "grpc_proxy")},
    "NO_PROXY": _LOCAL,
    "no_proxy": _LOCAL,
    # Google metadata server (GCS credentials, TPU discovery, google-auth).
    "GCE_METADATA_HOST": DEAD_ENDPOINT,
    "GCE_METADATA_IP": DEAD_ENDPOINT,
    "NO_GCE_CHECK": "true",
    # TensorFlow's C++ GCS filesystem: fail on the first refused request, quickly.
    "GCS_RETRY_CONFIG_MAX_RETRIES": "0",
    "GCS_REQUEST_CONNECTION_TIMEOUT_SECS": "2",
    "GCS_METADATA_REQUEST_TIMEOUT_SECS": "1",
    "TFDS_RETRY_TRIES": "1",
    # Model hubs: use the local cache only.
    "HF_HUB_OFFLINE": "1",
}


class NetworkBlockedError(ConnectionRefusedError):
    """A test tried to connect to a host other than this machine."""


class LookupBlockedError(socket.gaierror):
    """A test tried to resolve a name other than this machine's (a `gaierror`, as offline)."""


def _is_local(host) -> bool:
    if host is None or host in ("", "localhost"):
        return True
    if isinstance(host, bytes):
        host = host.decode()
    try:
        address = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return str(host).endswith(".localhost")
    return address.is_loopback or address.is_unspecified


def _is_numeric(host) -> bool:
    try:
        ipaddress.ip_address(str(host.decode() if isinstance(host, bytes) else host))
    except ValueError:
        return False
    return True


def _address_host(address):
    """The host part of a socket address; None for AF_UNIX paths and other non-IP families."""
    if isinstance(address, tuple) and address:
        return address[0]
    return None


def block_outbound(monkeypatch) -> None:
    """Make `socket.connect`, `connect_ex`, `create_connection` and name lookups raise
    `NetworkBlockedError` (lookups: `LookupBlockedError`) for any non-loopback host; AF_UNIX
    and loopback stay allowed."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address):
        host = _address_host(address)
        if not _is_local(host):
            raise NetworkBlockedError(
                f"tests run offline: a connection to {address!r} was attempted")

    def connect(self, address):
        check(address)
        return real_connect(self, address)

    def connect_ex(self, address):
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not (_is_local(host) or _is_numeric(host)):  # numeric: no lookup, connect decides
            raise LookupBlockedError(
                socket.EAI_NONAME, f"tests run offline: a lookup of {host!r} was attempted")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
