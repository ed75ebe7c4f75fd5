#!/usr/bin/python3
"""Decrypt wssgate's output with libxmlsec1 (python3-xmlsec) and compare the Body.

libxmlsec1 does not follow WS-Security token references, so this does what a
WS-Security receiver built on it does: unwrap the EncryptedKey with the RSA private
key, then decrypt the EncryptedData with the content key it yielded. The decrypted
Body children must equal the original's after exclusive canonicalization.

Usage:
  xmlsec_interop.py decrypt MANIFEST.json   cases {"name", "encrypted", "original", "key"}
  xmlsec_interop.py encrypt MANIFEST.json   cases {"name", "original", "cert", "output",
                                            "data", "transport", "reference"}: libxmlsec1
                                            encrypts the Body content, the EncryptedKey
                                            inside EncryptedData/KeyInfo
  xmlsec_interop.py compare MANIFEST.json   cases {"name", "original", "decrypted"}
  xmlsec_interop.py verify MANIFEST.json    cases {"name", "signed", "cert", "key"?}: decrypt
                                            what the EncryptedKey lists (with "key"), then
                                            verify the ds:Signature with the signer's "cert"
                                            (the other way round for "order"
                                            "encrypt-then-sign")
                                            (libxmlsec1 checks SignatureValue and every
                                            Reference, Ids registered by local name "Id", so
                                            wsu:Id counts) and the Timestamp's window; the
                                            result names what the References point at
Each prints a JSON list of {"name", "ok", "error"?}.
"""
import json
import sys

import xmlsec
from lxml import etree

XENC = "http://www.w3.org/2001/04/xmlenc#"
SOAP = ("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope")

PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)


def body_of(root):
    for ns in SOAP:
        body = root.find("{%s}Body" % ns)
        if body is not None:
            return body
    raise ValueError("no Body")


def canonical_children(body):
    out = []
    for child in body:
        if isinstance(child.tag, str):
            out.append(etree.tostring(child, method="c14n", exclusive=True, with_comments=True))
    return out


def content_key_data(uri):
    if "aes" in uri:
        return xmlsec.constants.KeyDataAes
    if "tripledes" in uri:
        return xmlsec.constants.KeyDataDes
    raise ValueError("unknown data algorithm " + uri)


XENC11 = "http://www.w3.org/2009/xmlenc11#"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
DIGESTS = {
    DSIG + "sha1": "SHA1",
    XENC + "sha256": "SHA256",
    XENC + "sha512": "SHA512",
}
MGFS = {
    XENC11 + "mgf1sha1": "SHA1",
    XENC11 + "mgf1sha256": "SHA256",
    XENC11 + "mgf1sha512": "SHA512",
}


def unwrap_xmlenc11_oaep(ek, method, key_path):
    """libxmlsec1 1.2 predates XML Encryption 1.1's rsa-oaep: read its DigestMethod and
    MGF as the specification defines them (SHA-1 when absent; rsa-oaep-mgf1p has no
    MGF element, so MGF1-SHA-1) and unwrap with the cryptography package."""
    import base64
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    digest = method.find("{%s}DigestMethod" % DSIG)
    mgf = method.find("{%s}MGF" % XENC11)
    digest_name = DIGESTS[digest.get("Algorithm")] if digest is not None else "SHA1"
    mgf_name = MGFS[mgf.get("Algorithm")] if mgf is not None else "SHA1"
    key = serialization.load_pem_private_key(open(key_path, "rb").read(), password=None)
    value = ek.find("{%s}CipherData/{%s}CipherValue" % (XENC, XENC)).text
    wrapped = base64.b64decode("".join(value.split()))
    return key.decrypt(wrapped, padding.OAEP(
        mgf=padding.MGF1(getattr(hashes, mgf_name)()),
        algorithm=getattr(hashes, digest_name)(), label=None))


def run_case(case):
    root = etree.fromstring(open(case["encrypted"], "rb").read(), PARSER)
    eks = root.findall(".//{%s}EncryptedKey" % XENC)
    if len(eks) != 1:
        raise ValueError("expected one EncryptedKey, found %d" % len(eks))
    method = eks[0].find("{%s}EncryptionMethod" % XENC)
    # libxmlsec1 1.2 also reads rsa-oaep-mgf1p with SHA-1 only; a DigestMethod other
    # than SHA-1 (MGF1 staying SHA-1) is unwrapped the same way as xmlenc11's rsa-oaep.
    digest = method.find("{%s}DigestMethod" % DSIG)
    other_digest = digest is not None and digest.get("Algorithm") != DSIG + "sha1"
    if method.get("Algorithm") == XENC11 + "rsa-oaep" or other_digest:
        content_key = unwrap_xmlenc11_oaep(eks[0], method, case["key"])
    else:
        manager = xmlsec.KeysManager()
        ctx = xmlsec.EncryptionContext(manager)
        ctx.key = xmlsec.Key.from_file(case["key"], xmlsec.constants.KeyDataFormatPem)
        content_key = ctx.decrypt(eks[0])
    refs = eks[0].findall("{%s}ReferenceList/{%s}DataReference" % (XENC, XENC))
    if len(refs) != 1:
        raise ValueError("expected one DataReference, found %d" % len(refs))
    wanted = refs[0].get("URI").lstrip("#")
    eds = [e for e in root.iter("{%s}EncryptedData" % XENC) if e.get("Id") == wanted]
    if len(eds) != 1:
        raise ValueError("expected one EncryptedData with Id %s, found %d" % (wanted, len(eds)))
    ed = eds[0]
    alg = ed.find("{%s}EncryptionMethod" % XENC).get("Algorithm")
    ctx2 = xmlsec.EncryptionContext(xmlsec.KeysManager())
    ctx2.key = xmlsec.Key.from_binary_data(content_key_data(alg), content_key)
    ctx2.decrypt(ed)
    original = etree.fromstring(open(case["original"], "rb").read(), PARSER)
    got = canonical_children(body_of(root))
    want = canonical_children(body_of(original))
    if got != want:
        return {"name": case["name"], "ok": False,
                "error": "body differs", "got": [g.decode()[:300] for g in got],
                "want": [w.decode()[:300] for w in want]}
    return {"name": case["name"], "ok": True}


DATA = {
    "aes128-cbc": (lambda: xmlsec.constants.TransformAes128Cbc, 128, "aes"),
    "aes256-cbc": (lambda: xmlsec.constants.TransformAes256Cbc, 256, "aes"),
    "aes128-gcm": (lambda: xmlsec.constants.TransformAes128Gcm, 128, "aes"),
    "aes256-gcm": (lambda: xmlsec.constants.TransformAes256Gcm, 256, "aes"),
    "tripledes-cbc": (lambda: xmlsec.constants.TransformDes3Cbc, 192, "des"),
}
TRANSPORT = {
    "rsa-oaep-mgf1p": lambda: xmlsec.constants.TransformRsaOaep,
    "rsa-1_5": lambda: xmlsec.constants.TransformRsaPkcs1,
}


def encrypt_case(case):
    original = etree.fromstring(open(case["original"], "rb").read(), PARSER)
    body = body_of(original)
    # python-xmlsec cannot hand back a text node as the result of a content
    # encryption; whitespace between the Body's children is not compared anyway.
    body.text = None
    for c in body:
        c.tail = None
    transform, bits, kind = DATA[case["data"]]
    enc_data = xmlsec.template.encrypted_data_create(
        original, transform(), type=xmlsec.constants.TypeEncContent, ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(enc_data)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(enc_data, ns="dsig")
    enc_key = xmlsec.template.add_encrypted_key(key_info, TRANSPORT[case["transport"]]())
    xmlsec.template.encrypted_data_ensure_cipher_value(enc_key)
    ek_info = xmlsec.template.encrypted_data_ensure_key_info(enc_key)
    x509 = xmlsec.template.add_x509_data(ek_info)
    if case["reference"] == "issuer-serial":
        xmlsec.template.x509_data_add_issuer_serial(x509)
    else:
        xmlsec.template.x509_data_add_certificate(x509)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_file(case["cert"], xmlsec.constants.KeyDataFormatCertPem))
    ctx = xmlsec.EncryptionContext(manager)
    key_data = xmlsec.constants.KeyDataAes if kind == "aes" else xmlsec.constants.KeyDataDes
    ctx.key = xmlsec.Key.generate(key_data, bits, xmlsec.constants.KeyDataTypeSession)
    ctx.encrypt_xml(enc_data, body)
    with open(case["output"], "wb") as f:
        f.write(etree.tostring(original.getroottree(), xml_declaration=True, encoding="UTF-8"))
    return {"name": case["name"], "ok": True}


def compare_case(case):
    got = canonical_children(body_of(etree.fromstring(open(case["decrypted"], "rb").read(), PARSER)))
    want = canonical_children(body_of(etree.fromstring(open(case["original"], "rb").read(), PARSER)))
    if got != want:
        return {"name": case["name"], "ok": False, "error": "body differs",
                "got": [g.decode()[:300] for g in got], "want": [w.decode()[:300] for w in want]}
    return {"name": case["name"], "ok": True}


WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"


def decrypt_all(root, key_path):
    """Unwrap the EncryptedKey and decrypt every EncryptedData its ReferenceList names
    (the Body content, and the Signature when it is encrypted), in place."""
    for ek in root.findall(".//{%s}EncryptedKey" % XENC):
        manager = xmlsec.KeysManager()
        ctx = xmlsec.EncryptionContext(manager)
        ctx.key = xmlsec.Key.from_file(key_path, xmlsec.constants.KeyDataFormatPem)
        content_key = ctx.decrypt(ek)
        for ref in ek.findall("{%s}ReferenceList/{%s}DataReference" % (XENC, XENC)):
            wanted = ref.get("URI").lstrip("#")
            eds = [e for e in root.iter("{%s}EncryptedData" % XENC) if e.get("Id") == wanted]
            if len(eds) != 1:
                raise ValueError("expected one EncryptedData %s, found %d" % (wanted, len(eds)))
            alg = eds[0].find("{%s}EncryptionMethod" % XENC).get("Algorithm")
            ctx2 = xmlsec.EncryptionContext(xmlsec.KeysManager())
            ctx2.key = xmlsec.Key.from_binary_data(content_key_data(alg), content_key)
            ctx2.decrypt(eds[0])
        ek.getparent().remove(ek)


def verify_case(case):
    import datetime
    root = etree.fromstring(open(case["signed"], "rb").read(), PARSER)
    # Sign-then-encrypt: decrypt, then verify; encrypt-then-sign: the reverse.
    verify_first = case.get("order") == "encrypt-then-sign"
    if case.get("key") and not verify_first:
        decrypt_all(root, case["key"])
    xmlsec.tree.add_ids(root, ["Id"])
    signatures = root.findall(".//{%s}Signature" % DSIG)
    if case.get("signature_id"):
        # A message that already carried a signature of its own keeps it.
        signatures = [s for s in signatures if s.get("Id") == case["signature_id"]]
    if len(signatures) != 1:
        raise ValueError("expected one Signature, found %d" % len(signatures))
    ctx = xmlsec.SignatureContext()
    ctx.key = xmlsec.Key.from_file(case["cert"], xmlsec.constants.KeyDataFormatCertPem)
    ctx.verify(signatures[0])
    if case.get("key") and verify_first:
        decrypt_all(root, case["key"])
    signed = []
    for ref in signatures[0].findall("{%s}SignedInfo/{%s}Reference" % (DSIG, DSIG)):
        wanted = ref.get("URI").lstrip("#")
        hits = [e for e in root.iter() if isinstance(e.tag, str)
                and wanted in (e.get("Id"), e.get("{%s}Id" % WSU))]
        if len(hits) != 1:
            raise ValueError("Reference %s names %d elements" % (wanted, len(hits)))
        signed.append(etree.QName(hits[0]).localname)
    for ts in root.iter("{%s}Timestamp" % WSU):
        if ts.getparent() is None or etree.QName(ts.getparent()).localname != "Security":
            continue
        def when(name):
            text = ts.find("{%s}%s" % (WSU, name)).text.strip().replace("Z", "+00:00")
            return datetime.datetime.fromisoformat(text)
        now = datetime.datetime.now(datetime.timezone.utc)
        if not (when("Created") <= now + datetime.timedelta(seconds=60) and now < when("Expires")):
            raise ValueError("Timestamp not valid now")
    return {"name": case["name"], "ok": True, "signed": signed}


def main():
    mode, manifest = sys.argv[1], sys.argv[2]
    run = {"decrypt": run_case, "encrypt": encrypt_case, "compare": compare_case,
           "verify": verify_case}[mode]
    cases = json.load(open(manifest))
    results = []
    for case in cases:
        try:
            results.append(run(case))
        except Exception as e:  # one failing case must not hide the others
            results.append({"name": case["name"], "ok": False, "error": "%s: %s" % (type(e).__name__, e)})
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
