// A WS-Security receiver built on Apache WSS4J (Debian's libwss4j-java): processes the
// Security header of each message with the receiver's PKCS#12 keystore, then compares
// the decrypted Body children with the original's after exclusive canonicalization.
//
// Usage: java -cp ... Wss4jDecrypt KEYSTORE.p12 PASSWORD MANIFEST
// MANIFEST: one case per line, "name<TAB>encrypted.xml<TAB>original.xml".
// Prints one line per case: "ok<TAB>name" or "fail<TAB>name<TAB>reason".

import java.io.*;
import java.nio.file.*;
import java.util.*;
import javax.security.auth.callback.*;
import javax.xml.parsers.*;
import org.w3c.dom.*;
import org.apache.ws.security.*;
import org.apache.ws.security.components.crypto.*;
import org.apache.xml.security.c14n.Canonicalizer;

public class Wss4jDecrypt {
    static List<String> bodyChildren(Document doc) throws Exception {
        Canonicalizer c14n = Canonicalizer.getInstance(Canonicalizer.ALGO_ID_C14N_EXCL_WITH_COMMENTS);
        Element env = doc.getDocumentElement();
        List<String> out = new ArrayList<>();
        for (Node n = env.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element && "Body".equals(n.getLocalName())) {
                for (Node c = n.getFirstChild(); c != null; c = c.getNextSibling()) {
                    if (c instanceof Element) {
                        out.add(new String(c14n.canonicalizeSubtree(c), "UTF-8"));
                    }
                }
            }
        }
        return out;
    }

    static Document parse(DocumentBuilderFactory f, String path) throws Exception {
        return f.newDocumentBuilder().parse(new File(path));
    }

    public static void main(String[] args) throws Exception {
        org.apache.xml.security.Init.init();
        WSSConfig.init();
        String keystore = args[0], password = args[1];
        Properties p = new Properties();
        p.put("org.apache.ws.security.crypto.provider", "org.apache.ws.security.components.crypto.Merlin");
        p.put("org.apache.ws.security.crypto.merlin.keystore.type", "pkcs12");
        p.put("org.apache.ws.security.crypto.merlin.keystore.password", password);
        p.put("org.apache.ws.security.crypto.merlin.keystore.file", keystore);
        Crypto crypto = CryptoFactory.getInstance(p);
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
                Document doc = parse(f, c[1]);
                WSSecurityEngine engine = new WSSecurityEngine();
                WSSConfig config = WSSConfig.getNewInstance();
                engine.setWssConfig(config);
                List<WSSecurityEngineResult> results = engine.processSecurityHeader(doc, null, cb, crypto);
                if (results == null || results.isEmpty()) throw new Exception("no security results");
                List<String> got = bodyChildren(doc), want = bodyChildren(parse(f, c[2]));
                if (!got.equals(want)) throw new Exception("body differs: " + got + " vs " + want);
                System.out.println("ok\t" + c[0]);
            } catch (Throwable e) {
                System.out.println("fail\t" + c[0] + "\t" + e.toString().replace('\n', ' '));
            }
        }
    }
}
