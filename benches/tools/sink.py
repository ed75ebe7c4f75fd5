#!/usr/bin/env python3
"""A receiver that reads each request body (Content-Length or chunked), counts the
bytes, and answers with a small SOAP response. Loopback only.

Usage: sink.py PORT
"""
import http.server
import sys

RESPONSE = b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ok/></soap:Body></soap:Envelope>'


class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        total = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                remaining = size
                while remaining:
                    got = len(self.rfile.read(min(remaining, 1 << 20)))
                    remaining -= got
                    total += got
                self.rfile.readline()
        else:
            remaining = int(self.headers.get("Content-Length", 0))
            while remaining:
                got = len(self.rfile.read(min(remaining, 1 << 20)))
                remaining -= got
                total += got
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(RESPONSE)))
        self.send_header("X-Received-Bytes", str(total))
        self.end_headers()
        self.wfile.write(RESPONSE)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
