"""The nginx site in front of several engine processes, generated from the list of instances.

``pubquiz-engine nginx-site`` prints it; ``systemd/nginx-pubquiz.conf`` is its output for the
three template instances 8801-8803 (a test checks that they agree), and ``pubquiz-engine
cluster`` runs nginx on it. One generator, so that the site, the shipped file and the local
cluster cannot drift apart.

What the site routes, all on one host name (DESIGN section 7):

- ``/ws?code=CODE``: the entry point. nginx hashes the join code consistently over the
  instances, so that every member of a session meets on one process; adding or removing an
  instance moves only the codes that hashed to it. Without a code (an operator creating a
  session) any instance.
- ``/ws/node/NAME``: each instance's own address, the ``public_url`` it registers and that
  redirects name (``server/failover.py`` rule 6). Never retried elsewhere: a client sent to a
  node that went away gets 502 and goes back to the entry point.
- ``/results?code=CODE``: hashed like the entry point (the host console's results download);
  a node that does not hold the session answers 307 to ``/ws/node/NAME/results`` of the one
  that does.
- ``/health``: any instance. ``/metrics``: never (Prometheus scrapes the admin ports).
- everything else (the pages and their static files, served by every engine): any instance.

Rules the generated site keeps:

1. **No sticky failure marks on WebSocket upstreams** (``max_fails=0``): with ``max_fails=1``
   nginx answered 502 to every handshake for seconds during a rolling restart (DESIGN section
   7). A refused or failed connect is retried on the next instance of the ring for that request
   only (``proxy_next_upstream error timeout http_502 http_503``); a draining engine answers
   503 to new connections.
2. **The client address is overwritten, never appended** (``X-Forwarded-For $remote_addr``):
   the engine trusts it (``PUBQUIZ_TRUST_FORWARDED_FOR``) only because nothing else reaches it.
3. **Frames are never buffered** and idle connections live an hour (the engine pings every
   20 s).

This module is pure: text in, text out.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import attrs

#: An instance's name is a path segment of its public address: keep it plain.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}$")


def _check_name(_inst: object, _attr: object, value: str) -> None:
    if not _NAME.match(value):
        raise ValueError(f"instance name {value!r}: letters, digits, '.', '_', '-' (<= 64)")


def _check_address(_inst: object, _attr: object, value: str) -> None:
    if not _ADDRESS.match(value):
        raise ValueError(f"instance address {value!r}: HOST:PORT")


@attrs.frozen
class Instance:
    """One engine process: ``name`` (its public path ``/ws/node/NAME``) at ``address``."""

    name: str = attrs.field(validator=_check_name)
    address: str = attrs.field(validator=_check_address)

    @classmethod
    def parse(cls, spec: str) -> Instance:
        """``NAME=HOST:PORT``, or a bare port ``8801`` (= ``8801=127.0.0.1:8801``, the
        template unit's instance ``pubquiz-engine@8801``)."""
        if spec.isdigit():
            return cls(spec, f"127.0.0.1:{spec}")
        name, sep, address = spec.partition("=")
        if not sep:
            raise ValueError(f"instance {spec!r}: NAME=HOST:PORT or PORT")
        return cls(name, address)


def node_path(name: str) -> str:
    """The path of instance ``name``'s own address through nginx."""
    return f"/ws/node/{name}"


def public_url(origin: str, name: str) -> str:
    """The ``public_url`` instance ``name`` registers: ``origin`` (``wss://quiz.example.org``)
    plus its node path."""
    return origin.rstrip("/") + node_path(name)


@attrs.frozen
class Site:
    """How the site listens. ``tls``: the production layout (port 80 redirects to 443 with
    the certificate paths below); else one plain HTTP ``listen`` (the local cluster, tests)."""

    server_name: str = "quiz.example.org"
    tls: bool = True
    listen: str = "127.0.0.1:8080"
    #: Default: Let's Encrypt's paths for ``server_name``.
    certificate: str | None = None
    certificate_key: str | None = None

    @property
    def certificate_path(self) -> str:
        return self.certificate or f"/etc/letsencrypt/live/{self.server_name}/fullchain.pem"

    @property
    def certificate_key_path(self) -> str:
        return self.certificate_key or f"/etc/letsencrypt/live/{self.server_name}/privkey.pem"


_HEADER = """\
# nginx site in front of the pubquiz-engine@PORT instances (/etc/nginx/sites-available/pubquiz).
# GENERATED: do not edit. Regenerate with the instance list (docs/operations.md, section 4):
#   pubquiz-engine nginx-site {args}
#
# Routes (one host name; docs/operations.md, section 4):
#   /ws?code=CODE    the entry point: the join code hashed consistently over the instances, so
#                    that every member of a session meets on one process (no code: any)
#   /ws/node/NAME    each instance's own address: its PUBQUIZ_PUBLIC_URL, named by redirects
#                    (and /ws/node/NAME/results, where a moved session's results are)
#   /results?code=   hashed like /ws; /health any instance; /metrics never (admin ports)
#   /                the pages and their static files, from any instance

"""

_UPSTREAM = """\
# The entry point's ring: no failure marks (rule 1); a failed connect is retried on the next
# instance for that request only.
upstream pubquiz_engines {{
    hash $pubquiz_route consistent;
{servers}    keepalive 32;
}}

# The route key: the join code (clients upper-case it); without one, any instance.
map $arg_code $pubquiz_route {{
    ""      $request_id;
    default $arg_code;
}}

# WebSocket upgrade: pass "Connection: upgrade" only when the client asked for it.
map $http_upgrade $pubquiz_connection {{
    default upgrade;
    ""      "";
}}

"""

_PROXY_WS = """\
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $pubquiz_connection;
        proxy_set_header Host $host;
        # The engine takes the client address from here (PUBQUIZ_TRUST_FORWARDED_FOR=true);
        # overwrite, never append, what the client sent.
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        # The engine pings every 20 s; an idle quiz connection must outlive a long round.
        proxy_read_timeout 1h;
        proxy_send_timeout 1h;
        proxy_buffering off;
        proxy_request_buffering off;
        proxy_connect_timeout 5s;
"""

_PROXY_HTTP = """\
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $remote_addr;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_next_upstream error timeout http_502 http_503;
        proxy_connect_timeout 5s;
"""


def render(instances: Sequence[Instance], site: Site = Site(), *, args: str = "",
           drained: Collection[str] = ()) -> str:
    """The site for ``instances`` (at least one; names and addresses unique).

    ``drained``: names kept out of the entry point's ring but still reachable at their own
    address, so that the sessions they hold stay reachable by redirect while new ones land
    elsewhere (to retire an instance: drain it, then stop it, which hands its sessions over).
    """
    if not instances:
        raise ValueError("at least one instance")
    unknown = set(drained) - {i.name for i in instances}
    if unknown:
        raise ValueError(f"drained instances not in the list: {sorted(unknown)}")
    ring = [i for i in instances if i.name not in drained]
    if not ring:
        raise ValueError("every instance is drained: the entry point would have none")
    for what, values in (("name", [i.name for i in instances]),
                         ("address", [i.address for i in instances])):
        if len(set(values)) != len(values):
            raise ValueError(f"instance {what}s must be unique: {values}")
    out = [_HEADER.format(args=args or _args_of(instances, site, drained))]
    servers = "".join(f"    server {i.address} max_fails=0;\n" for i in ring)
    out.append(_UPSTREAM.format(servers=servers))
    if site.tls:
        out.append(f"server {{\n    listen 80;\n    listen [::]:80;\n"
                   f"    server_name {site.server_name};\n"
                   "    # certbot or your ACME client answers here; everything else goes to "
                   "HTTPS.\n"
                   "    location /.well-known/acme-challenge/ { root /var/www/html; }\n"
                   "    location / { return 301 https://$host$request_uri; }\n}\n\n")
        out.append(f"server {{\n    # No http2 on these listeners: the WebSocket upgrade is "
                   f"HTTP/1.1.\n    listen 443 ssl;\n    listen [::]:443 ssl;\n"
                   f"    server_name {site.server_name};\n\n"
                   f"    ssl_certificate     {site.certificate_path};\n"
                   f"    ssl_certificate_key {site.certificate_key_path};\n"
                   "    ssl_protocols TLSv1.2 TLSv1.3;\n")
    else:
        out.append(f"server {{\n    listen {site.listen};\n    server_name {site.server_name};\n")
    out.append("\n    location = /ws {\n        proxy_pass http://pubquiz_engines;\n")
    out.append(_PROXY_WS)
    out.append("        # A refused or failed connect (the instance is down or draining): the "
               "next one\n        # in the ring for this code.\n"
               "        proxy_next_upstream error timeout http_502 http_503;\n    }\n")
    for inst in instances:
        out.append(f"\n    location = {node_path(inst.name)} {{\n"
                   f"        proxy_pass http://{inst.address};\n")
        out.append(_PROXY_WS)
        out.append("        # Only this instance: if it is gone the client goes back to /ws.\n"
                   "        proxy_next_upstream off;\n    }\n")
        out.append(f"\n    # Its /results: where a node sends the results download of a session "
                   f"it holds.\n    location = {node_path(inst.name)}/results {{\n"
                   f"        proxy_pass http://{inst.address}/results;\n")
        out.append(_PROXY_HTTP.replace("        proxy_next_upstream error timeout http_502 "
                                       "http_503;\n", "        proxy_next_upstream off;\n"))
        out.append("    }\n")
    out.append("\n    location = /results {\n        proxy_pass http://pubquiz_engines;\n")
    out.append(_PROXY_HTTP)
    out.append("    }\n")
    out.append("\n    # Liveness for a load balancer in front of nginx.\n"
               "    location = /health {\n        proxy_pass http://pubquiz_engines;\n")
    out.append(_PROXY_HTTP)
    out.append("    }\n")
    out.append("\n    # Prometheus scrapes each instance's admin port, never through here.\n"
               "    location = /metrics {\n        return 404;\n    }\n")
    out.append("\n    # The pages and their static files: every instance serves the same.\n"
               "    location / {\n        proxy_pass http://pubquiz_engines;\n")
    out.append(_PROXY_HTTP)
    out.append("    }\n}\n")
    return "".join(out)


def _args_of(instances: Sequence[Instance], site: Site, drained: Collection[str]) -> str:
    """The command line that generates this site (for the header)."""
    specs = " ".join(i.name if i.address == f"127.0.0.1:{i.name}" else f"{i.name}={i.address}"
                     for i in instances)
    parts = [f"--server-name {site.server_name}"]
    if not site.tls:
        parts.append(f"--listen {site.listen}")
    parts += [f"--drain {name}" for name in sorted(drained)]
    return " ".join([*parts, specs])


__all__ = ["Instance", "Site", "node_path", "public_url", "render"]
