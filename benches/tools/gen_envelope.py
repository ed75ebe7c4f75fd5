#!/usr/bin/env python3
"""Write a SOAP 1.1 envelope of about SIZE bytes to stdout, without holding it in memory.

Usage: gen_envelope.py SIZE   (bytes; suffixes K, M, G for KiB, MiB, GiB)
"""
import sys

units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
arg = sys.argv[1]
size = int(arg[:-1]) * units[arg[-1]] if arg[-1] in units else int(arg)
out = sys.stdout.buffer
out.write(b'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
          b'<soap:Header/><soap:Body><ord:batch xmlns:ord="urn:example:orders">')
line = b'<ord:line><ord:sku>SKU-00000000</ord:sku><ord:qty>3</ord:qty><ord:note>caf&#233; &amp; more</ord:note></ord:line>'
block = line * 1024
written = 0
while written < size:
    out.write(block)
    written += len(block)
out.write(b"</ord:batch></soap:Body></soap:Envelope>")
