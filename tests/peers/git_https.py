"""A git server over HTTPS: Debian's `git http-backend` (smart HTTP, shallow clones work) behind a
small CGI bridge with a self-signed certificate. Usage: python git_https.py PROJECT_ROOT CERT_DIR [TOKEN]
With TOKEN, every request must carry HTTP Basic credentials whose password is TOKEN (401 otherwise).
Prints `ready PORT` once listening on 127.0.0.1."""

from __future__ import annotations

import base64
import http.server
import ssl
import subprocess
import sys
from pathlib import Path

from devyard.tls import self_signed


class Handler(http.server.BaseHTTPRequestHandler):
    root = ""
    token = ""

    def do_GET(self) -> None:
        self._cgi()

    def do_POST(self) -> None:
        self._cgi()

    def _cgi(self) -> None:
        if self.token and not self._authorized():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("content-length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {
            "GIT_PROJECT_ROOT": self.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "PATH": "/usr/bin:/bin",
            "GIT_PROTOCOL": self.headers.get("git-protocol", ""),
            "HTTP_CONTENT_ENCODING": self.headers.get("content-encoding", ""),
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status = 200
        headers = []
        for line in head.split(b"\r\n"):
            key, _, value = line.decode().partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _authorized(self) -> bool:
        scheme, _, value = self.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        _, _, password = base64.b64decode(value).decode(errors="replace").partition(":")
        return password == self.token

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(root: str, cert_dir: str, token: str = "") -> None:
    Handler.root, Handler.token = root, token
    cert, key = self_signed(Path(cert_dir), "127.0.0.1")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"ready {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(*sys.argv[1:4])
