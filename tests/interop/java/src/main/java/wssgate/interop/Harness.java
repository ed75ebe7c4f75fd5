// Receivers built on Apache WSS4J 3 and Apache CXF 4, for wssgate's output. One JVM
// per run: the Rust test (tests/interop_java.rs) batches every case into it.
//
//   decrypt KEYSTORE.p12 PASSWORD MANIFEST
//       MANIFEST: one case per line, "name<TAB>encrypted.xml<TAB>original.xml". Each case
//       goes through the DOM receiver (WSSecurityEngine) and the streaming receiver
//       (InboundWSSec), both with the Basic Security Profile enforced. Prints one line
//       per case and receiver: "dom|stax<TAB>name<TAB>ok", "...<TAB>differs<TAB>what" or
//       "...<TAB>refused<TAB>reason" (the exception, then what WSS4J logged meanwhile).
//       "ok" means the Body children equal the original's after exclusive C14N.
//   encrypt KEYSTORE.p12 PASSWORD MANIFEST
//       A WSS4J 3 sender (Senders.java): encrypts each case for a certificate.
//   verify KEYSTORE.p12 PASSWORD MANIFEST SIGNER.pem
//       Signed messages (see Verifiers.java): each case through both receivers, with
//       the signer's certificate as the trusted one; prints "...<TAB>ok<TAB>signed names".
//   serve KEYSTORE.p12 PASSWORD [SIGNER.pem]
//       Publishes the CXF services of Services.java on 127.0.0.1 (with SIGNER.pem also
//       those of SignedServices.java, which trust that certificate's signatures and no
//       other), prints "listening<TAB>PORT<TAB>path,path,...", and runs until standard
//       input closes.
//
// The keystore holds the receiver's key under the alias "receiver".

package wssgate.interop;

import java.io.*;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.security.KeyStore;
import java.util.*;
import javax.security.auth.callback.Callback;
import javax.security.auth.callback.CallbackHandler;
import javax.xml.parsers.DocumentBuilderFactory;
import org.apache.wss4j.common.crypto.Crypto;
import org.apache.wss4j.common.crypto.Merlin;
import org.apache.wss4j.common.ext.WSPasswordCallback;
import org.apache.xml.security.c14n.Canonicalizer;
import org.w3c.dom.*;

public final class Harness {
    private Harness() {}

    public static void main(String[] args) throws Exception {
        LogCapture.install();
        // WSS4J's own initialization (it registers its messages with Santuario's).
        org.apache.wss4j.dom.engine.WSSConfig.init();
        quietLogging();
        if (args.length < 3 || (args[0].equals("decrypt") && args.length < 4)
                || (args[0].equals("encrypt") && args.length < 4)
                || (args[0].equals("verify") && args.length < 5)) {
            System.err.println("usage: decrypt|encrypt KEYSTORE PASSWORD MANIFEST"
                    + " | verify KEYSTORE PASSWORD MANIFEST SIGNER.pem | serve KEYSTORE PASSWORD [SIGNER.pem]");
            System.exit(2);
        }
        Crypto crypto = crypto(args[1], args[2]);
        CallbackHandler passwords = passwords(args[2]);
        switch (args[0]) {
            case "decrypt" -> Receivers.run(crypto, passwords, Paths.get(args[3]));
            case "encrypt" -> Senders.run(crypto, Paths.get(args[3]));
            case "verify" -> Verifiers.run(keyStore(args[1], args[2]), args[2], passwords, Paths.get(args[3]),
                    Paths.get(args[4]));
            case "serve" -> Services.run(crypto, passwords, args.length > 3
                    ? Verifiers.trusting(keyStore(args[1], args[2]), Paths.get(args[3]))
                    : null);
            default -> {
                System.err.println("unknown mode " + args[0]);
                System.exit(2);
            }
        }
    }

    /** CXF logs every refused message (through java.util.logging unless it picks
     *  slf4j); the test reports refusals itself. */
    private static final List<java.util.logging.Logger> QUIET = new ArrayList<>();

    private static void quietLogging() {
        for (String name : new String[] {"org.apache.cxf", "org.apache.wss4j", "org.apache.xml.security", "org.eclipse.jetty"}) {
            java.util.logging.Logger l = java.util.logging.Logger.getLogger(name);
            l.setLevel(java.util.logging.Level.SEVERE);
            QUIET.add(l);
        }
    }

    static Crypto crypto(String keystore, String password) throws Exception {
        Merlin merlin = new Merlin();
        merlin.setKeyStore(keyStore(keystore, password));
        return merlin;
    }

    static KeyStore keyStore(String keystore, String password) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (InputStream in = Files.newInputStream(Paths.get(keystore))) {
            ks.load(in, password.toCharArray());
        }
        return ks;
    }

    static CallbackHandler passwords(String password) {
        return callbacks -> {
            for (Callback c : callbacks) {
                if (c instanceof WSPasswordCallback pc) {
                    pc.setPassword(password);
                }
            }
        };
    }

    static DocumentBuilderFactory documentBuilders() throws Exception {
        DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
        f.setNamespaceAware(true);
        f.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        return f;
    }

    /** The Body's element children, each after exclusive C14N with comments. */
    static List<String> bodyChildren(Document doc) throws Exception {
        Element env = doc.getDocumentElement();
        List<String> out = new ArrayList<>();
        for (Node n = env.getFirstChild(); n != null; n = n.getNextSibling()) {
            if (n instanceof Element && "Body".equals(n.getLocalName())) {
                for (Node c = n.getFirstChild(); c != null; c = c.getNextSibling()) {
                    if (c instanceof Element e) {
                        out.add(canonical(e));
                    }
                }
            }
        }
        return out;
    }

    static String canonical(Node node) throws Exception {
        Canonicalizer c14n = Canonicalizer.getInstance(Canonicalizer.ALGO_ID_C14N_EXCL_WITH_COMMENTS);
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        c14n.canonicalizeSubtree(node, out);
        return out.toString(StandardCharsets.UTF_8);
    }

    /** A reason on one line. */
    static String reason(Throwable e) {
        StringBuilder s = new StringBuilder(e.toString());
        for (Throwable c = e.getCause(); c != null && c != e; c = c.getCause()) {
            s.append(" <- ").append(c);
            if (c.getCause() == c) break;
        }
        return s.toString().replace('\n', ' ').replace('\t', ' ');
    }
}
