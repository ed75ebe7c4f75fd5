// Signed messages through the two receivers of WSS4J 3, the DOM WSSecurityEngine
// and the streaming InboundWSSec, with the signer's certificate as the one trusted
// certificate: each verifies the signature (trust included) and the Timestamp, and
// decrypts what is encrypted, the Basic Security Profile enforced.

package wssgate.interop;

import java.io.*;
import java.nio.file.*;
import java.security.KeyStore;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.*;
import javax.security.auth.callback.CallbackHandler;
import javax.xml.namespace.QName;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.stream.XMLInputFactory;
import javax.xml.stream.XMLStreamReader;
import org.apache.wss4j.common.crypto.Crypto;
import org.apache.wss4j.common.crypto.Merlin;
import org.apache.wss4j.dom.WSConstants;
import org.apache.wss4j.dom.WSDataRef;
import org.apache.wss4j.dom.engine.WSSConfig;
import org.apache.wss4j.dom.engine.WSSecurityEngine;
import org.apache.wss4j.dom.engine.WSSecurityEngineResult;
import org.apache.wss4j.dom.handler.RequestData;
import org.apache.wss4j.dom.handler.WSHandlerResult;
import org.apache.wss4j.stax.ext.WSSSecurityProperties;
import org.apache.wss4j.stax.securityEvent.WSSecurityEventConstants;
import org.apache.wss4j.stax.setup.InboundWSSec;
import org.apache.wss4j.stax.setup.WSSec;
import org.apache.xml.security.stax.securityEvent.AbstractSecuredElementSecurityEvent;
import org.apache.xml.security.stax.securityEvent.SecurityEvent;
import org.w3c.dom.*;

final class Verifiers {
    private Verifiers() {}

    /** MANIFEST: one case per line, "name<TAB>signed.xml<TAB>original.xml". Prints
     *  "dom|stax<TAB>name<TAB>ok<TAB>Body,Timestamp,…" (what the signature covers,
     *  the Body equal to the original's after decryption), or "...<TAB>refused<TAB>reason"
     *  or "...<TAB>differs<TAB>what". */
    static void run(KeyStore receiver, String password, CallbackHandler passwords, Path manifest,
                    Path signerCert) throws Exception {
        WSSConfig.init();
        Crypto crypto = trusting(receiver, signerCert);
        DocumentBuilderFactory builders = Harness.documentBuilders();
        XMLInputFactory stax = XMLInputFactory.newInstance();
        stax.setProperty(XMLInputFactory.SUPPORT_DTD, false);
        stax.setProperty(XMLInputFactory.IS_NAMESPACE_AWARE, true);
        for (String line : Files.readAllLines(manifest)) {
            if (line.isEmpty()) continue;
            String[] c = line.split("\t");
            String name = c[0];
            List<String> want = Harness.bodyChildren(builders.newDocumentBuilder().parse(new File(c[2])));
            report("dom", name, want, () -> {
                Document doc = builders.newDocumentBuilder().parse(new File(c[1]));
                List<String> signed = dom(doc, crypto, passwords);
                return new Outcome(signed, Harness.bodyChildren(doc));
            });
            report("stax", name, want, () -> stax(Paths.get(c[1]), stax, builders, crypto, passwords));
        }
    }

    /** The receiver's key for decryption, the signer's certificate as the trust anchor. */
    static Crypto trusting(KeyStore receiver, Path signerCert) throws Exception {
        X509Certificate cert;
        try (InputStream in = Files.newInputStream(signerCert)) {
            cert = (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
        }
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        trust.setCertificateEntry("signer", cert);
        Merlin merlin = new Merlin();
        merlin.setKeyStore(receiver);
        merlin.setTrustStore(trust);
        return merlin;
    }

    record Outcome(List<String> signed, List<String> body) {}

    interface Verification {
        Outcome verify() throws Exception;
    }

    private static void report(String receiver, String name, List<String> want, Verification v) {
        String outcome;
        LogCapture.take();
        try {
            Outcome got = v.verify();
            outcome = got.body().equals(want)
                    ? "ok\t" + String.join(",", got.signed())
                    : "differs\t" + (got.body() + " vs " + want).replace('\n', ' ');
        } catch (Throwable e) {
            String log = LogCapture.take();
            outcome = "refused\t" + Harness.reason(e) + (log.isEmpty() ? "" : " [log: " + log + "]");
        }
        System.out.println(receiver + "\t" + name + "\t" + outcome);
        System.out.flush();
    }

    /** WSSecurityEngine: verify, check the Timestamp, decrypt; the local names of the
     *  signed elements, in SignedInfo order. */
    static List<String> dom(Document doc, Crypto crypto, CallbackHandler passwords) throws Exception {
        RequestData data = new RequestData();
        data.setWssConfig(WSSConfig.getNewInstance());
        data.setDecCrypto(crypto);
        data.setSigVerCrypto(crypto);
        data.setCallbackHandler(passwords);
        data.setDisableBSPEnforcement(false);
        data.setAllowRSA15KeyTransportAlgorithm(false);
        WSHandlerResult results = new WSSecurityEngine().processSecurityHeader(doc, data);
        if (results == null) throw new Exception("no security results");
        Map<Integer, List<WSSecurityEngineResult>> byAction = results.getActionResults();
        if (byAction.get(WSConstants.TS) == null) throw new Exception("no Timestamp result");
        List<WSSecurityEngineResult> signatures = byAction.get(WSConstants.SIGN);
        if (signatures == null || signatures.size() != 1) throw new Exception("not one signature: " + signatures);
        List<String> signed = new ArrayList<>();
        @SuppressWarnings("unchecked")
        List<WSDataRef> refs = (List<WSDataRef>) signatures.get(0).get(WSSecurityEngineResult.TAG_DATA_REF_URIS);
        for (WSDataRef ref : refs) {
            signed.add(ref.getName().getLocalPart());
        }
        return signed;
    }

    /** InboundWSSec over the message as a stream: the names of what its events
     *  report as signed (parts and elements), the Body as it comes out. */
    static Outcome stax(Path path, XMLInputFactory factory, DocumentBuilderFactory builders,
                        Crypto crypto, CallbackHandler passwords) throws Exception {
        WSSSecurityProperties properties = new WSSSecurityProperties();
        properties.setDecryptionCrypto(crypto);
        properties.setSignatureVerificationCrypto(crypto);
        properties.setCallbackHandler(passwords);
        properties.setDisableBSPEnforcement(false);
        properties.setAllowRSA15KeyTransportAlgorithm(false);
        InboundWSSec inbound = WSSec.getInboundWSSec(properties);
        List<SecurityEvent> events = new ArrayList<>();
        Document doc;
        try (InputStream in = Files.newInputStream(path)) {
            XMLStreamReader reader = inbound.processInMessage(factory.createXMLStreamReader(in), null,
                    events::add);
            doc = Receivers.toDom(reader, builders);
        }
        boolean timestamp = false;
        boolean signature = false;
        List<String> signed = new ArrayList<>();
        for (SecurityEvent e : events) {
            var type = e.getSecurityEventType();
            if (type == WSSecurityEventConstants.TIMESTAMP) timestamp = true;
            if (type == WSSecurityEventConstants.SignatureValue) signature = true;
            if ((type == WSSecurityEventConstants.SIGNED_PART || type == WSSecurityEventConstants.SignedElement)
                    && e instanceof AbstractSecuredElementSecurityEvent s && s.isSigned()) {
                List<QName> p = s.getElementPath();
                signed.add(p.get(p.size() - 1).getLocalPart());
            }
        }
        if (!timestamp) throw new Exception("no Timestamp event: " + events);
        if (!signature) throw new Exception("no SignatureValue event: " + events);
        return new Outcome(signed, Harness.bodyChildren(doc));
    }
}
