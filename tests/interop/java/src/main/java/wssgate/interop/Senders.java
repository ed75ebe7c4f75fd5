// A sender built on Apache WSS4J 3 (WSSecEncrypt, as a CXF client's outbound
// interceptor runs it): encrypts the Body of each message for a certificate, for
// the receiver-side gateway of wssgate to decrypt.
//
//   encrypt KEYSTORE.p12 PASSWORD MANIFEST
//       MANIFEST: one case per line, "name<TAB>plain.xml<TAB>cert.pem<TAB>key-identifier
//       <TAB>data-uri<TAB>transport-uri<TAB>output.xml"; key-identifier is one of
//       issuer-serial, bst, ski, thumbprint, x509. rsa-oaep (xmlenc11) is sent with
//       SHA-256 and MGF1-SHA-256. Prints "ok<TAB>name" or "fail<TAB>name<TAB>reason".

package wssgate.interop;

import java.io.*;
import java.nio.file.*;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import javax.crypto.KeyGenerator;
import javax.crypto.SecretKey;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.transform.TransformerFactory;
import javax.xml.transform.dom.DOMSource;
import javax.xml.transform.stream.StreamResult;
import org.apache.wss4j.common.WSS4JConstants;
import org.apache.wss4j.common.crypto.Crypto;
import org.apache.wss4j.common.util.KeyUtils;
import org.apache.wss4j.dom.WSConstants;
import org.apache.wss4j.dom.message.WSSecEncrypt;
import org.apache.wss4j.dom.message.WSSecHeader;
import org.w3c.dom.Document;

final class Senders {
    private Senders() {}

    static int keyIdentifier(String name) {
        return switch (name) {
            case "issuer-serial" -> WSConstants.ISSUER_SERIAL;
            case "bst" -> WSConstants.BST_DIRECT_REFERENCE;
            case "ski" -> WSConstants.SKI_KEY_IDENTIFIER;
            case "thumbprint" -> WSConstants.THUMBPRINT_IDENTIFIER;
            case "x509" -> WSConstants.X509_KEY_IDENTIFIER;
            default -> throw new IllegalArgumentException("key identifier " + name);
        };
    }

    static void run(Crypto crypto, Path manifest) throws Exception {
        DocumentBuilderFactory builders = Harness.documentBuilders();
        CertificateFactory certificates = CertificateFactory.getInstance("X.509");
        var transformer = TransformerFactory.newInstance().newTransformer();
        for (String line : Files.readAllLines(manifest)) {
            if (line.isEmpty()) continue;
            String[] c = line.split("\t");
            try (InputStream pem = Files.newInputStream(Paths.get(c[2]))) {
                Document doc = builders.newDocumentBuilder().parse(new File(c[1]));
                X509Certificate cert = (X509Certificate) certificates.generateCertificate(pem);
                WSSecHeader header = new WSSecHeader(doc);
                header.setMustUnderstand(true);
                header.insertSecurityHeader();
                WSSecEncrypt encrypt = new WSSecEncrypt(header);
                encrypt.setUseThisCert(cert);
                encrypt.setKeyIdentifierType(keyIdentifier(c[3]));
                encrypt.setSymmetricEncAlgorithm(c[4]);
                encrypt.setKeyEncAlgo(c[5]);
                if (c[5].equals(WSS4JConstants.KEYTRANSPORT_RSAOAEP_XENC11)) {
                    encrypt.setDigestAlgorithm(WSS4JConstants.SHA256);
                    encrypt.setMGFAlgorithm(WSS4JConstants.MGF_SHA256);
                }
                KeyGenerator generator = KeyUtils.getKeyGenerator(c[4]);
                SecretKey key = generator.generateKey();
                Document encrypted = encrypt.build(crypto, key);
                transformer.transform(new DOMSource(encrypted), new StreamResult(new File(c[6])));
                System.out.println("ok\t" + c[0]);
            } catch (Throwable e) {
                System.out.println("fail\t" + c[0] + "\t" + Harness.reason(e));
            }
        }
    }
}
