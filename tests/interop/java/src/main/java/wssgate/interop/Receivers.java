// The two receivers of WSS4J 3, as CXF runs them without policy: the DOM
// WSSecurityEngine and the streaming InboundWSSec. Both enforce the Basic Security
// Profile (WSS4J's default, set here explicitly) and refuse RSA-1.5 (also the default).

package wssgate.interop;

import java.io.*;
import java.nio.file.*;
import java.util.*;
import javax.security.auth.callback.CallbackHandler;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.stream.XMLInputFactory;
import javax.xml.stream.XMLStreamConstants;
import javax.xml.stream.XMLStreamReader;
import org.apache.wss4j.common.crypto.Crypto;
import org.apache.wss4j.dom.WSConstants;
import org.apache.wss4j.dom.engine.WSSConfig;
import org.apache.wss4j.dom.engine.WSSecurityEngine;
import org.apache.wss4j.dom.engine.WSSecurityEngineResult;
import org.apache.wss4j.dom.handler.RequestData;
import org.apache.wss4j.dom.handler.WSHandlerResult;
import org.apache.wss4j.stax.ext.WSSSecurityProperties;
import org.apache.wss4j.stax.securityEvent.WSSecurityEventConstants;
import org.apache.wss4j.stax.setup.InboundWSSec;
import org.apache.wss4j.stax.setup.WSSec;
import org.apache.xml.security.stax.securityEvent.SecurityEvent;
import org.w3c.dom.*;

final class Receivers {
    private Receivers() {}

    static void run(Crypto crypto, CallbackHandler passwords, Path manifest) throws Exception {
        WSSConfig.init();
        DocumentBuilderFactory builders = Harness.documentBuilders();
        XMLInputFactory stax = XMLInputFactory.newInstance();
        stax.setProperty(XMLInputFactory.SUPPORT_DTD, false);
        stax.setProperty(XMLInputFactory.IS_NAMESPACE_AWARE, true);
        for (String line : Files.readAllLines(manifest)) {
            if (line.isEmpty()) continue;
            String[] c = line.split("\t");
            String name = c[0];
            List<String> want = Harness.bodyChildren(builders.newDocumentBuilder().parse(new File(c[2])));
            report("dom", name, () -> {
                Document doc = builders.newDocumentBuilder().parse(new File(c[1]));
                dom(doc, crypto, passwords);
                return Harness.bodyChildren(doc);
            }, want);
            report("stax", name, () -> stax(Paths.get(c[1]), stax, builders, crypto, passwords), want);
        }
    }

    interface Decryption {
        List<String> decrypt() throws Exception;
    }

    private static void report(String receiver, String name, Decryption d, List<String> want) {
        String outcome;
        LogCapture.take();
        try {
            List<String> got = d.decrypt();
            outcome = got.equals(want) ? "ok" : "differs\t" + (got + " vs " + want).replace('\n', ' ');
        } catch (Throwable e) {
            String log = LogCapture.take();
            outcome = "refused\t" + Harness.reason(e) + (log.isEmpty() ? "" : " [log: " + log + "]");
        }
        System.out.println(receiver + "\t" + name + "\t" + outcome);
        System.out.flush();
    }

    /** WSSecurityEngine over the parsed document, decrypting in place. */
    static void dom(Document doc, Crypto crypto, CallbackHandler passwords) throws Exception {
        RequestData data = new RequestData();
        data.setWssConfig(WSSConfig.getNewInstance());
        data.setDecCrypto(crypto);
        data.setCallbackHandler(passwords);
        data.setDisableBSPEnforcement(false);
        data.setAllowRSA15KeyTransportAlgorithm(false);
        WSHandlerResult results = new WSSecurityEngine().processSecurityHeader(doc, data);
        if (results == null || results.getActionResults().get(WSConstants.ENCR) == null) {
            throw new Exception("no decryption result");
        }
        for (WSSecurityEngineResult r : results.getActionResults().get(WSConstants.ENCR)) {
            if (r.get(WSSecurityEngineResult.TAG_DATA_REF_URIS) == null) {
                throw new Exception("EncryptedKey without data references");
            }
        }
    }

    /** InboundWSSec over the document as a stream; its output read into a DOM. */
    static List<String> stax(Path path, XMLInputFactory factory, DocumentBuilderFactory builders,
                             Crypto crypto, CallbackHandler passwords) throws Exception {
        WSSSecurityProperties properties = new WSSSecurityProperties();
        properties.setDecryptionCrypto(crypto);
        properties.setCallbackHandler(passwords);
        properties.setDisableBSPEnforcement(false);
        properties.setAllowRSA15KeyTransportAlgorithm(false);
        InboundWSSec inbound = WSSec.getInboundWSSec(properties);
        List<SecurityEvent> events = new ArrayList<>();
        Document doc;
        try (InputStream in = Files.newInputStream(path)) {
            XMLStreamReader reader = inbound.processInMessage(factory.createXMLStreamReader(in), null,
                    events::add);
            doc = toDom(reader, builders);
        }
        boolean bodyDecrypted = events.stream().anyMatch(e ->
                e.getSecurityEventType() == WSSecurityEventConstants.ContentEncrypted
                        || e.getSecurityEventType() == WSSecurityEventConstants.ENCRYPTED_PART);
        if (!bodyDecrypted) {
            throw new Exception("no content-encrypted event: " + events);
        }
        return Harness.bodyChildren(doc);
    }

    /** Build a DOM from the events a reader yields (namespace declarations kept). */
    static Document toDom(XMLStreamReader r, DocumentBuilderFactory builders) throws Exception {
        Document doc = builders.newDocumentBuilder().newDocument();
        Node current = doc;
        while (r.hasNext()) {
            switch (r.next()) {
                case XMLStreamConstants.START_ELEMENT -> {
                    String prefix = r.getPrefix();
                    String qname = prefix == null || prefix.isEmpty() ? r.getLocalName() : prefix + ":" + r.getLocalName();
                    Element e = doc.createElementNS(r.getNamespaceURI(), qname);
                    for (int i = 0; i < r.getNamespaceCount(); i++) {
                        String p = r.getNamespacePrefix(i);
                        String attr = p == null || p.isEmpty() ? "xmlns" : "xmlns:" + p;
                        e.setAttributeNS("http://www.w3.org/2000/xmlns/", attr, r.getNamespaceURI(i));
                    }
                    for (int i = 0; i < r.getAttributeCount(); i++) {
                        String p = r.getAttributePrefix(i);
                        String local = r.getAttributeLocalName(i);
                        String ns = r.getAttributeNamespace(i);
                        e.setAttributeNS(ns == null || ns.isEmpty() ? null : ns,
                                p == null || p.isEmpty() ? local : p + ":" + local, r.getAttributeValue(i));
                    }
                    current.appendChild(e);
                    current = e;
                }
                case XMLStreamConstants.END_ELEMENT -> current = current.getParentNode();
                case XMLStreamConstants.CHARACTERS, XMLStreamConstants.SPACE -> {
                    if (current != doc) current.appendChild(doc.createTextNode(r.getText()));
                }
                case XMLStreamConstants.CDATA -> current.appendChild(doc.createCDATASection(r.getText()));
                case XMLStreamConstants.COMMENT -> current.appendChild(doc.createComment(r.getText()));
                case XMLStreamConstants.PROCESSING_INSTRUCTION ->
                        current.appendChild(doc.createProcessingInstruction(r.getPITarget(), r.getPIData()));
                default -> { }
            }
        }
        r.close();
        return doc;
    }
}
