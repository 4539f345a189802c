"""The files in ``systemd/``: systemd accepts the units, their numbers agree with the engine's,
and nginx accepts the site and really proxies a WebSocket session to an engine."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
import trio
from opskit import QUIZ, engine_at

from pubquiz_engine.client import open_client
from pubquiz_engine.game import load_quiz_data
from pubquiz_engine.protocol import messages as m
from pubquiz_engine.server.config import ServerConfig
from pubquiz_engine.server.engine import STOP_MARGIN

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
SERVICES = ("pubquiz-engine.service", "pubquiz-engine@.service")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _need(tool: str, *, in_ci: bool) -> str:
    path = shutil.which(tool)
    if path is None:
        if in_ci and IN_CI:
            pytest.fail(f"{tool} is not installed (CI=true: this check never skips)")
        pytest.skip(f"{tool} is not installed")
    return path


def _directives(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (UNITS / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return float(match[1]) * (60 if match[2] == "min" else 1)


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    analyze = _need("systemd-analyze", in_ci=True)
    # verify checks that ExecStart exists: point it at this checkout's entry point.
    entry = str(Path(sys.executable).parent / "pubquiz-engine")
    assert Path(entry).exists(), entry
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace("/opt/pubquiz-engine/bin/pubquiz-engine", entry)
        (tmp_path / unit.name).write_text(text)
    shutil.copy(UNITS / "pubquiz-engine.target", tmp_path)
    result = subprocess.run(
        [analyze, "verify", "pubquiz-engine.service", "pubquiz-engine@8801.service",
         "pubquiz-engine.target"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


@pytest.mark.parametrize("name", SERVICES)
def test_service_settings_match_the_engine(name: str) -> None:
    unit = _directives(name)
    assert unit["Type"] == ["notify"] and unit["Restart"] == ["on-failure"]
    assert unit["DynamicUser"] == ["yes"] and unit["StateDirectory"]
    # The stop timeout covers the drain and the engine's own margin after it.
    drain = ServerConfig().drain_timeout
    assert _seconds(unit["TimeoutStopSec"][0]) >= drain + STOP_MARGIN
    assert _seconds(unit["WatchdogSec"][0]) >= 10  # a GC pause or a busy second is not a hang
    assert int(unit["LimitNOFILE"][0]) >= 19_000 + 1_000  # the connection target + headroom
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes")):
        assert unit[key] == [value], key
    assert unit["SystemCallFilter"][0] == "@system-service"
    assert set(unit["RestrictAddressFamilies"][0].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}


def test_environment_example_names_only_real_settings() -> None:
    known = {"PUBQUIZ_" + f.name.upper() for f in attrs.fields(ServerConfig)}
    text = (UNITS / "engine.env.example").read_text()
    names = set(re.findall(r"^#?(PUBQUIZ_[A-Z_]+)=", text, re.MULTILINE))
    assert names and names <= known, names - known
    for name in SERVICES:
        for value in _directives(name).get("Environment", []):
            variable = value.split("=", 1)[0]
            assert variable == "PYTHONUNBUFFERED" or variable in known, variable


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    _need("openssl", in_ci=True)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def _nginx_conf(tmp_path: Path, site: str) -> Path:
    (tmp_path / "site.conf").write_text(site)
    conf = tmp_path / "nginx.conf"
    conf.write_text(f"""
daemon off;
master_process off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp_path}/body;
    proxy_temp_path {tmp_path}/proxy;
    fastcgi_temp_path {tmp_path}/fastcgi;
    uwsgi_temp_path {tmp_path}/uwsgi;
    scgi_temp_path {tmp_path}/scgi;
    include {tmp_path}/site.conf;
}}
""")
    return conf


def test_the_shipped_site_is_the_generators_output() -> None:
    """systemd/nginx-pubquiz.conf is exactly ``pubquiz-engine nginx-site 8801 8802 8803``: the
    shipped site cannot drift from the generator (regenerate it, never edit it)."""
    result = subprocess.run(
        [sys.executable, "-m", "pubquiz_engine.cli", "nginx-site", "8801", "8802", "8803"],
        capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout == (UNITS / "nginx-pubquiz.conf").read_text()


def test_the_site_routes_each_instance_and_everything_else() -> None:
    """Every instance has its own /ws/node/NAME location to it alone; the entry point, the
    pages, /results and /health go through the hashed ring without sticky failure marks."""
    site = (UNITS / "nginx-pubquiz.conf").read_text()
    site = site.split("listen 443 ssl;", 1)[1]  # the HTTPS server (port 80 only redirects)
    for port in (8801, 8802, 8803):
        block = site.split(f"location = /ws/node/{port} {{", 1)[1].split("}", 1)[0]
        assert f"proxy_pass http://127.0.0.1:{port};" in block
        assert "proxy_next_upstream off;" in block
    for location in ("location = /ws {", "location = /results {", "location = /health {",
                     "location / {"):
        block = site.split(location, 1)[1].split("}", 1)[0]
        assert "proxy_pass http://pubquiz_engines;" in block, location
    upstream = (UNITS / "nginx-pubquiz.conf").read_text().split("upstream pubquiz_engines {")[1]
    servers = re.findall(r"server (\S+) ([^;]*);", upstream.split("}", 1)[0])
    assert servers == [(f"127.0.0.1:{p}", "max_fails=0") for p in (8801, 8802, 8803)]
    assert "location = /metrics {\n        return 404;" in site


def test_nginx_accepts_the_site(tmp_path: Path) -> None:
    nginx = _need("nginx", in_ci=True)
    cert, key = _self_signed(tmp_path)
    site = (UNITS / "nginx-pubquiz.conf").read_text()
    site = site.replace("/etc/letsencrypt/live/quiz.example.org/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/quiz.example.org/privkey.pem", str(key))
    conf = _nginx_conf(tmp_path, site)
    result = subprocess.run([nginx, "-t", "-c", str(conf), "-p", str(tmp_path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_nginx_proxies_a_websocket_session(tmp_path: Path) -> None:
    """The site's /ws location, on plain HTTP (TLS is nginx's business), in front of a real
    engine: a player joins and answers through nginx, with the code in the query string."""
    nginx = _need("nginx", in_ci=True)
    with trio.fail_after(30):
        async with engine_at(tmp_path, trust_forwarded_for=True) as (engine, address):
            port = _free_port()
            site = (UNITS / "nginx-pubquiz.conf").read_text()
            site = "\n".join(line for line in site.splitlines()
                             if "[::]" not in line and not line.strip().startswith("ssl_"))
            site = site.replace("listen 80;", f"listen 127.0.0.1:{_free_port()};")
            site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{port};")
            site = re.sub(r"server 127\.0\.0\.1:8801 ",
                          f"server 127.0.0.1:{address.port} ", site)
            site = re.sub(r"\n\s*server 127\.0\.0\.1:880[23] [^\n]*", "", site)
            conf = _nginx_conf(tmp_path, site)
            process = await trio.lowlevel.open_process(
                [nginx, "-c", str(conf), "-p", str(tmp_path)], stderr=subprocess.PIPE)
            try:
                session, host_token = engine.create_session(
                    load_quiz_data(QUIZ, source="test"), mode="solo")
                url = f"ws://127.0.0.1:{port}/ws?code={session.code}"
                # nginx gives no readiness signal: connect until it listens (bounded, 5 s).
                for _attempt in range(100):
                    try:
                        stream = await trio.open_tcp_stream("127.0.0.1", port)
                    except OSError:
                        assert process.returncode is None, "nginx exited"
                        await trio.sleep(0.05)
                    else:
                        await stream.aclose()
                        break
                async with open_client(address.url) as host, open_client(url) as ann:
                    await host.host(session.code, host_token)
                    await ann.join(session.code, "Ann")
                    await host.request(m.Start)
                    question = await ann.next_event(m.Question)
                    ack = await ann.answer(question.q, 0)
                    assert ack.q == question.q
                assert engine.metrics.value("pubquiz_answers_accepted_total") == 1
            finally:
                process.terminate()
                with trio.fail_after(10):
                    await process.wait()
