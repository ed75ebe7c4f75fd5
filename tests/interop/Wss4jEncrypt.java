// A WS-Security sender built on Apache WSS4J (Debian's libwss4j-java): encrypts the
// Body of each message for a receiver certificate, as a WSS4J client does.
//
// Usage: java -cp ... Wss4jEncrypt MANIFEST
// MANIFEST: one case per line, "name<TAB>plain.xml<TAB>cert.pem<TAB>key-identifier
// <TAB>data-uri<TAB>transport-uri<TAB>output.xml"; key-identifier is one of
// issuer-serial, bst, ski, thumbprint, x509.
// Prints one line per case: "ok<TAB>name" or "fail<TAB>name<TAB>reason".

import java.io.*;
import java.nio.file.*;
import java.security.cert.*;
import javax.xml.parsers.*;
import javax.xml.transform.*;
import javax.xml.transform.dom.*;
import javax.xml.transform.stream.*;
import org.w3c.dom.*;
import org.apache.ws.security.*;
import org.apache.ws.security.message.*;

public class Wss4jEncrypt {
    static int keyIdentifier(String name) {
        switch (name) {
            case "issuer-serial": return WSConstants.ISSUER_SERIAL;
            case "bst": return WSConstants.BST_DIRECT_REFERENCE;
            case "ski": return WSConstants.SKI_KEY_IDENTIFIER;
            case "thumbprint": return WSConstants.THUMBPRINT_IDENTIFIER;
            case "x509": return WSConstants.X509_KEY_IDENTIFIER;
            default: throw new IllegalArgumentException("key identifier " + name);
        }
    }

    public static void main(String[] args) throws Exception {
        org.apache.xml.security.Init.init();
        WSSConfig.init();
        DocumentBuilderFactory f = DocumentBuilderFactory.newInstance();
        f.setNamespaceAware(true);
        f.setFeature("http://apache.org/xml/features/disallow-doctype-decl", true);
        CertificateFactory certificates = CertificateFactory.getInstance("X.509");
        Transformer out = TransformerFactory.newInstance().newTransformer();
        for (String line : Files.readAllLines(Paths.get(args[0]))) {
            if (line.isEmpty()) continue;
            String[] c = line.split("\t");
            try (InputStream pem = new FileInputStream(c[2])) {
                Document doc = f.newDocumentBuilder().parse(new File(c[1]));
                X509Certificate cert = (X509Certificate) certificates.generateCertificate(pem);
                WSSecHeader header = new WSSecHeader();
                header.setMustUnderstand(true);
                header.insertSecurityHeader(doc);
                WSSecEncrypt encrypt = new WSSecEncrypt();
                encrypt.setUseThisCert(cert);
                encrypt.setKeyIdentifierType(keyIdentifier(c[3]));
                encrypt.setSymmetricEncAlgorithm(c[4]);
                encrypt.setKeyEnc(c[5]);
                Document encrypted = encrypt.build(doc, null, header);
                out.transform(new DOMSource(encrypted), new StreamResult(new File(c[6])));
                System.out.println("ok\t" + c[0]);
            } catch (Throwable e) {
                System.out.println("fail\t" + c[0] + "\t" + e.toString().replace('\n', ' '));
            }
        }
    }
}
