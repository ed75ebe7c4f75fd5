"""Exclusive canonical form of each file given, by libxml2 (through lxml): the whole
document and the SOAP Body subtree, without comments. Prints a JSON list."""
import json
import sys

from lxml import etree

SOAP = ("http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope")

results = []
parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)
for path in sys.argv[1:]:
    tree = etree.parse(path, parser)
    document = etree.tostring(tree, method="c14n", exclusive=True, with_comments=False)
    body = None
    for ns in SOAP:
        found = tree.getroot().find("{%s}Body" % ns)
        if found is not None:
            body = etree.tostring(found, method="c14n", exclusive=True, with_comments=False)
    results.append({
        "file": path,
        "document": document.decode("utf-8"),
        "body": body.decode("utf-8") if body is not None else None,
    })
print(json.dumps(results))
