#!/usr/bin/python3
"""Encryption throughput of libxmlsec1 (through python-xmlsec) on one core.

Per message, what a WS-Security sender with libxmlsec1 does: parse the envelope,
build the EncryptedData/EncryptedKey template (RSA-OAEP key transport, X.509
issuer-serial reference), encrypt the Body's content with a fresh AES key and
serialize. The certificate is loaded once, as wssgate loads it once per snapshot.

usage: xmlsec_encrypt.py CERT.pem [SECONDS]   prints one JSON line per body size
"""
import json
import sys
import time

import xmlsec
from lxml import etree

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
DATA = {
    "aes128-cbc": (xmlsec.constants.TransformAes128Cbc, 128),
    "aes256-gcm": (xmlsec.constants.TransformAes256Gcm, 256),
}


def envelope(size):
    """The same order-line body as benches/encrypt.rs and benches/load.rs."""
    lines = ['<ord:submit xmlns:ord="urn:example:orders">']
    length, i = len(lines[0]), 0
    while length < size:
        line = (f'<ord:line no="{i}"><ord:sku>SKU-{i:08}</ord:sku><ord:qty>3</ord:qty>'
                '<ord:note>caf&#233; &amp; more</ord:note></ord:line>')
        lines.append(line)
        length += len(line)
        i += 1
    lines.append("</ord:submit>")
    return ('<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="%s">'
            '<soap:Body>%s</soap:Body></soap:Envelope>' % (SOAP, "".join(lines))).encode()


def encrypt_once(raw, manager, transform, bits):
    doc = etree.fromstring(raw)
    body = doc.find("{%s}Body" % SOAP)
    enc_data = xmlsec.template.encrypted_data_create(
        doc, transform, type=xmlsec.constants.TypeEncContent, ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(enc_data)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(enc_data, ns="dsig")
    enc_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.constants.TransformRsaOaep)
    xmlsec.template.encrypted_data_ensure_cipher_value(enc_key)
    ek_info = xmlsec.template.encrypted_data_ensure_key_info(enc_key)
    xmlsec.template.x509_data_add_issuer_serial(xmlsec.template.add_x509_data(ek_info))
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(xmlsec.constants.KeyDataAes, bits,
                                  xmlsec.constants.KeyDataTypeSession)
    ctx.encrypt_xml(enc_data, body)
    return etree.tostring(doc)


def main():
    cert = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_file(cert, xmlsec.constants.KeyDataFormatCertPem))
    for data, (transform, bits) in DATA.items():
        for size in (1024, 1 << 20):
            raw = envelope(size)
            encrypt_once(raw, manager, transform, bits)
            n, started = 0, time.perf_counter()
            while time.perf_counter() - started < seconds:
                encrypt_once(raw, manager, transform, bits)
                n += 1
            elapsed = time.perf_counter() - started
            print(json.dumps({
                "implementation": "libxmlsec1 (python-xmlsec %s)" % xmlsec.__version__,
                "data": data, "size": size, "messages_per_second": round(n / elapsed, 1),
                "mib_per_second": round(n * len(raw) / elapsed / (1 << 20), 2),
            }), flush=True)


if __name__ == "__main__":
    main()
