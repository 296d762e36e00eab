"""HTTPS on 127.0.0.1:443, forwarded to fake-gcs-server's plain HTTP port (argv: CERT KEY PORT).

TensorFlow's GCS file system only speaks HTTPS to Google's host names, so .ci/gcs-emulator
points those names here. Two fixes on the way through: TensorFlow sends
`Transfer-Encoding: identity` on empty POSTs, which Go's HTTP server refuses (501 Unsupported
transfer encoding), so hop-by-hop headers are dropped and bodies re-sent with a length; and the
emulator's resumable-upload URL (Location) says http, which is put back to https. Beam's client
comes through here too, for one more fix: see _with_content_ids.
"""

import http.client
import http.server
import ssl
import sys

HOP_BY_HOP = {"transfer-encoding", "connection", "keep-alive", "proxy-connection", "content-length"}


def _with_content_ids(body: bytes, boundary: str) -> bytes:
    """A batch request whose parts each carry a Content-ID: google-cloud-storage sends none,
    GCS accepts that, and fake-gcs-server skips such parts (an empty answer, which Beam's
    rename after a write then fails on)."""
    delimiter = b"--" + boundary.encode()
    parts = body.split(delimiter)
    for number in range(1, len(parts) - 1):  # between the first and the closing delimiter
        newline = b"\r\n" if parts[number].startswith(b"\r\n") else b"\n"
        parts[number] = newline + b"Content-ID: <%d>" % number + parts[number]
    return delimiter.join(parts)


class Forward(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self):
        body = self._read_body()
        if self.path.startswith("/batch/"):
            body = _with_content_ids(body, self.headers.get_boundary())
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=300)
        upstream.request(
            self.command,
            self.path,
            body=body,
            headers={k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP},
        )
        answer = upstream.getresponse()
        data = answer.read()
        upstream.close()
        self.send_response_only(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() == "location":
                value = value.replace("http://", "https://", 1)
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    cert, key, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 443), Forward)
    server.upstream_port = port
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
