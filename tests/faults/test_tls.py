"""TLS (fault test 25, last part): ``rediss://`` with the right CA carries the whole flow for an
Executor and a worker; a wrong CA or a wrong host name is refused at once with a clear error.
The embedded server has no TLS, so a TLS-terminating proxy stands in front of it."""

from __future__ import annotations

import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

import rdispy
from tests.faults.proxy import Proxy
from tests.helpers import DEADLINE, executor

pytestmark = pytest.mark.integration

SECRET = "tls-relay-secret"


@dataclass
class Tls:
    port: int
    ca: Path  # the CA that signed the proxy's certificate (for "localhost")
    other_ca: Path  # a CA that did not

    def url(self, host: str = "localhost", ca: Path | None = None) -> str:
        return f"rediss://{host}:{self.port}/0?ssl_ca_certs={ca or self.ca}"


@pytest.fixture
def tls(private_server, tmp_path: Path) -> Iterator[Tls]:
    server = private_server()
    ca, other = trustme.CA(), trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    assert server.port is not None
    proxy = Proxy(server.port, context).start()
    yield Tls(proxy.port, tmp_path / "ca.pem", tmp_path / "other.pem")
    proxy.stop()


def test_rediss_with_the_right_ca_runs_the_whole_flow(tls, cluster, start_worker):
    worker = start_worker(tls.url(), 2, "tls-node")  # the proxy speaks nothing but TLS
    with executor(tls.url(), cluster=cluster) as ex:
        assert ex.submit(pow, 2, 10).result(DEADLINE) == 1024
        assert list(ex.map(pow, range(20), range(20))) == [pow(i, i) for i in range(20)]
        with pytest.raises(ZeroDivisionError):
            ex.submit(divmod, 1, 0).result(DEADLINE)
    assert worker.proc.poll() is None
    assert f"at rediss://localhost:{tls.port}" in worker.output()


@pytest.mark.parametrize(
    "host,which,expected",
    [
        ("localhost", "other", "certificate verify failed"),
        ("127.0.0.1", "right", "not valid for '127.0.0.1'"),
    ],
    ids=["wrong CA", "wrong host name"],
)
def test_a_wrong_ca_or_host_name_is_refused_at_once(
    tls, cluster, start_worker, host, which, expected
):
    url = tls.url(host, tls.other_ca if which == "other" else tls.ca)
    started = time.monotonic()
    with pytest.raises(rdispy.BrokerError, match="TLS connection to Redis .* refused") as info:
        rdispy.Executor(url, cluster=cluster, connect_timeout=30)
    assert expected in str(info.value)
    assert time.monotonic() - started < 10  # refused, not retried until the timeout
    worker = start_worker(url, 1, "tls-node", wait_ready=False)  # waits forever for a server
    code = worker.proc.wait(DEADLINE)
    out = worker.output()
    assert code != 0, out
    assert "TLS connection to Redis" in out and expected in out
    assert "Traceback" not in out


def test_the_relay_keeps_the_tls_options_of_its_upstream_url(
    tls, cluster, start_worker, start_relay
):
    """A relay to a Redis with a private CA (``ssl_ca_certs`` in its URL) carries the jobs of
    the nodes behind it; with the wrong CA it stops at once, saying why."""
    relay = start_relay(tls.url(), "--discovery-port", "0", "--secret", SECRET)
    start_worker(relay.url, 2, "behind-tls", "--secret", SECRET)
    with executor(tls.url(), cluster=cluster, secret=SECRET) as ex:
        futures = [ex.submit(pow, i, 2) for i in range(10)]
        assert [f.result(DEADLINE) for f in futures] == [i * i for i in range(10)]
        assert {f.node for f in futures} == {"behind-tls"}
    wrong = subprocess.run(
        [sys.executable, "-m", "rdispy", "relay", "--redis", tls.url(ca=tls.other_ca),
         "--listen", "127.0.0.1:0", "--cluster", cluster, "--discovery-port", "0"],
        capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert wrong.returncode != 0
    assert "certificate verify failed" in wrong.stderr + wrong.stdout
