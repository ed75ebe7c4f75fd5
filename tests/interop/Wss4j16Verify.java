// Signed messages through a WS-Security receiver built on Debian's WSS4J 1.6: the
// receiver's PKCS#12 keystore decrypts, the signer's certificate is the one trusted
// certificate; WSSecurityEngine verifies the signature (trust included) and the
// Timestamp, then the decrypted Body children are compared with the original's
// after exclusive canonicalization.
//
// Usage: java -cp ... Wss4j16Verify KEYSTORE.p12 PASSWORD MANIFEST SIGNER.pem
// MANIFEST: one case per line, "name<TAB>signed.xml<TAB>original.xml".
// Prints one line per case: "ok<TAB>name<TAB>signed local names, comma-separated" or
// "refused<TAB>name<TAB>reason".

import java.io.*;
import java.nio.file.*;
import java.security.KeyStore;
import java.security.cert.*;
import java.util.*;
import javax.security.auth.callback.*;
import javax.xml.parsers.*;
import org.w3c.dom.*;
import org.apache.ws.security.*;
import org.apache.ws.security.components.crypto.*;

public class Wss4j16Verify {
    public static void main(String[] args) throws Exception {
        org.apache.xml.security.Init.init();
        WSSConfig.init();
        String password = args[1];
        KeyStore keys = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(Paths.get(args[0]))) {
            keys.load(in, password.toCharArray());
        }
        X509Certificate signer;
        try (InputStream in = Files.newInputStream(Paths.get(args[3]))) {
            signer = (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
        }
        KeyStore trust = KeyStore.getInstance("PKCS12");
        trust.load(null, null);
        trust.setCertificateEntry("signer", signer);
        Merlin crypto = new Merlin();
        crypto.setKeyStore(keys);
        crypto.setTrustStore(trust);
        CallbackHandler cb = callbacks -> {
            for (Callback c : callbacks) {
                if (c instanceof WSPasswordCallback) ((WSPasswordCallback) c).setPassword(password);
            }
        };
        DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
        f.setNamespaceAware(true);
        f.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        for (String line : Files.readAllLines(Paths.get(args[2]))) {
            if (line.isEmpty()) continue;
            String[] c = line.split("\t");
            try {
                Document doc = f.newDocumentBuilder().parse(new File(c[1]));
                WSSecurityEngine engine = new WSSecurityEngine();
                engine.setWssConfig(WSSConfig.getNewInstance());
                List<WSSecurityEngineResult> results = engine.processSecurityHeader(doc, null, cb, crypto, crypto);
                if (results == null) throw new Exception("no security results");
                List<String> signed = new ArrayList<>();
                boolean timestamp = false;
                int signatures = 0;
                for (WSSecurityEngineResult r : results) {
                    int action = (Integer) r.get(WSSecurityEngineResult.TAG_ACTION);
                    if (action == WSConstants.TS) timestamp = true;
                    if (action == WSConstants.SIGN) {
                        signatures++;
                        @SuppressWarnings("unchecked")
                        List<WSDataRef> refs = (List<WSDataRef>) r.get(WSSecurityEngineResult.TAG_DATA_REF_URIS);
                        for (WSDataRef ref : refs) signed.add(ref.getName().getLocalPart());
                    }
                }
                if (!timestamp) throw new Exception("no Timestamp result");
                if (signatures != 1) throw new Exception(signatures + " signatures");
                List<String> got = Wss4jDecrypt.bodyChildren(doc);
                List<String> want = Wss4jDecrypt.bodyChildren(f.newDocumentBuilder().parse(new File(c[2])));
                if (!got.equals(want)) throw new Exception("body differs: " + got + " vs " + want);
                System.out.println("ok\t" + c[0] + "\t" + String.join(",", signed));
            } catch (Throwable e) {
                StringBuilder s = new StringBuilder(e.toString());
                for (Throwable t = e.getCause(); t != null && t != e; t = t.getCause()) {
                    s.append(" <- ").append(t);
                    if (t.getCause() == t) break;
                }
                System.out.println("refused\t" + c[0] + "\t" + s.toString().replace('\n', ' ').replace('\t', ' '));
            }
        }
    }
}
