"""The suite cannot reach the network (tests/_offline.py): each guard is shown to act, and to
leave this machine's own loopback traffic alone."""

import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request

import pytest
from _offline import DEAD_ENDPOINT, OFFLINE_ENV, LookupBlockedError, NetworkBlockedError

# TEST-NET-3 (RFC 5737): documentation-only, never routed; a name under the reserved .invalid TLD.
OUTSIDE_IP = "203.0.113.7"
OUTSIDE_NAME = "keras-bertopt.invalid"


def test_environment_guards_are_set():
    for name, value in OFFLINE_ENV.items():
        assert os.environ[name] == value, name
    assert os.environ["HTTPS_PROXY"] == f"http://{DEAD_ENDPOINT}"


def test_python_socket_to_outside_host_is_refused_before_any_packet():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        with pytest.raises(NetworkBlockedError, match=OUTSIDE_IP):
            s.connect((OUTSIDE_IP, 443))
        with pytest.raises(NetworkBlockedError, match=OUTSIDE_IP):
            s.connect_ex((OUTSIDE_IP, 80))
    with pytest.raises(NetworkBlockedError):
        socket.create_connection((OUTSIDE_IP, 443), timeout=30)
    with pytest.raises(LookupBlockedError, match=OUTSIDE_NAME) as info:
        socket.getaddrinfo(OUTSIDE_NAME, 443)
    assert isinstance(info.value, socket.gaierror)  # what code handling "offline" catches


def test_loopback_still_works():
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer():
        conn, _ = server.accept()
        with conn:
            conn.sendall(b"local ok")

    thread = threading.Thread(target=answer)
    thread.start()
    with socket.create_connection(("localhost", port), timeout=30) as client:
        assert client.recv(16) == b"local ok"
    thread.join()
    server.close()


def test_http_clients_go_to_the_dead_proxy():
    # urllib honours the proxy variables: the request is refused by 127.0.0.1:9, not sent out.
    with pytest.raises(urllib.error.URLError) as info:
        urllib.request.urlopen(f"https://{OUTSIDE_NAME}/", timeout=30)
    assert isinstance(info.value.reason, ConnectionRefusedError)


def test_tensorflow_gcs_filesystem_goes_to_the_dead_proxy():
    # TensorFlow's C++ filesystem does not use Python sockets; libcurl honours the proxy, and the
    # GCS client has no retries, so the first refused request is the error.
    import tensorflow as tf

    with pytest.raises(tf.errors.OpError, match=r"127\.0\.0\.1 port 9") as info:
        tf.io.gfile.exists("gs://tfds-data/datasets/glue")
    assert "0 retry attempts" in str(info.value)


def test_subprocesses_inherit_the_guards():
    code = (
        "import urllib.request, urllib.error\n"
        f"try:\n    urllib.request.urlopen('http://{OUTSIDE_NAME}/', timeout=30)\n"
        "except urllib.error.URLError as e:\n    print(type(e.reason).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "ConnectionRefusedError"


def test_gce_metadata_probe_is_refused():
    # What TPUClusterResolver(tpu=None) and GCS credentials do to find the metadata server.
    from tensorflow.python.tpu.client import client

    assert client._gce_metadata_endpoint() == f"http://{DEAD_ENDPOINT}"
    with pytest.raises(urllib.error.URLError) as info:
        client._request_compute_metadata("project/project-id")
    assert isinstance(info.value.reason, ConnectionRefusedError)
