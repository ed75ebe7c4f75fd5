// Apache CXF 4 services whose WS-SecurityPolicy wants the request signed and
// encrypted, as a WCF or CXF Basic256Sha256 client sends it: an AsymmetricBinding
// with the client's X509 token as InitiatorToken and the service's as
// RecipientToken, a signed Timestamp (IncludeTimestamp), OnlySignEntireHeadersAndBody,
// the Body signed and encrypted. Variants differ in what a sender's layout and order
// must satisfy:
//
//   lax                  Layout Lax, sign before encrypting (the default order),
//                        the initiator's certificate in a BinarySecurityToken
//                        (IncludeToken AlwaysToRecipient)
//   strict               the same with Layout Strict
//   laxtsfirst           the same with Layout LaxTsFirst
//   lax-encrypt-first    Layout Lax with EncryptBeforeSigning
//   strict-encrypt-signature
//                        Layout Strict with EncryptSignature: what WCF's default
//                        protection order (sign, then encrypt the Body and the
//                        Signature) puts in its policies
//   lax-token-never      Layout Lax, the initiator's certificate not in the message
//                        (IncludeToken Never): the signature's KeyInfo names it
//                        (issuer-serial, SKI, thumbprint) and the service looks it up
//   lax-spec-rsa-sha1    Layout Lax, the suite's signature algorithm as
//                        WS-SecurityPolicy 1.3 defines Basic256Sha256: RSA-SHA1
//                        (with SHA-256 digests)
//
// WS-SecurityPolicy's Basic256Sha256 names RSA-SHA1 for the signature; WCF's
// Basic256Sha256 signs with RSA-SHA256, and a CXF service that takes such clients
// says so with ws-security.asymmetric.signature.algorithm. Every variant but
// lax-spec-rsa-sha1 is configured that way.
//
// each for SOAP 1.1 and 1.2 and with CXF's DOM and streaming receivers, at
// /signed/VARIANT/soapNN/dom|stax. The certificate a signature may be made with is
// the one trusted signer the harness was given; any other is refused.

package wssgate.interop;

import java.nio.file.Path;
import java.util.*;
import javax.security.auth.callback.CallbackHandler;
import org.apache.wss4j.common.crypto.Crypto;

final class SignedServices {
    private SignedServices() {}

    static final String ALWAYS_TO_RECIPIENT =
            "http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200702/IncludeToken/AlwaysToRecipient";
    static final String NEVER = "http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200702/IncludeToken/Never";

    static final String RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

    /** name, Layout, extra binding assertions, the InitiatorToken's IncludeToken, the
     *  signature algorithm the suite is taken to name (null: the specification's). */
    static final String[][] VARIANTS = {
        {"lax", "<sp:Lax/>", "", ALWAYS_TO_RECIPIENT, RSA_SHA256},
        {"strict", "<sp:Strict/>", "", ALWAYS_TO_RECIPIENT, RSA_SHA256},
        {"laxtsfirst", "<sp:LaxTsFirst/>", "", ALWAYS_TO_RECIPIENT, RSA_SHA256},
        {"lax-encrypt-first", "<sp:Lax/>", "<sp:EncryptBeforeSigning/>", ALWAYS_TO_RECIPIENT, RSA_SHA256},
        {"strict-encrypt-signature", "<sp:Strict/>", "<sp:EncryptSignature/>", ALWAYS_TO_RECIPIENT, RSA_SHA256},
        {"lax-token-never", "<sp:Lax/>", "", NEVER, RSA_SHA256},
        {"lax-spec-rsa-sha1", "<sp:Lax/>", "", ALWAYS_TO_RECIPIENT, null},
    };

    /** Publish every variant on `port`; `crypto` decrypts, `verifier` trusts the
     *  signer. Returns the paths. */
    static List<String> publish(Path wsdls, int port, Crypto crypto, CallbackHandler passwords,
                                Crypto verifier) throws Exception {
        List<String> paths = new ArrayList<>();
        for (String[] v : VARIANTS) {
            for (String soap : new String[] {"soap11", "soap12"}) {
                for (String receiver : new String[] {"dom", "stax"}) {
                    String path = "/signed/" + v[0] + "/" + soap + "/" + receiver;
                    Map<String, Object> props = Services.properties(crypto, passwords, receiver);
                    // On the receiving side the encryption crypto is the one that
                    // verifies signatures (CXF names cryptos for the sender's roles):
                    // it trusts the given signer's certificate and nothing else.
                    props.put("security.encryption.crypto", verifier);
                    if (v[4] != null) {
                        props.put("ws-security.asymmetric.signature.algorithm", v[4]);
                    }
                    Services.publish(wsdls, port, path, policy(v[1], v[2], v[3]), soap, receiver, props);
                    paths.add(path);
                }
            }
        }
        return paths;
    }

    static String policy(String layout, String extra, String initiatorInclusion) {
        return """
                  <sp:AsymmetricBinding><wsp:Policy>
                    <sp:InitiatorToken><wsp:Policy>
                      <sp:X509Token sp:IncludeToken="%s">
                        <wsp:Policy><sp:WssX509V3Token10/></wsp:Policy>
                      </sp:X509Token>
                    </wsp:Policy></sp:InitiatorToken>
                    <sp:RecipientToken><wsp:Policy>
                      <sp:X509Token sp:IncludeToken="%s">
                        <wsp:Policy><sp:WssX509V3Token10/></wsp:Policy>
                      </sp:X509Token>
                    </wsp:Policy></sp:RecipientToken>
                    <sp:AlgorithmSuite><wsp:Policy><sp:Basic256Sha256/></wsp:Policy></sp:AlgorithmSuite>
                    <sp:Layout><wsp:Policy>%s</wsp:Policy></sp:Layout>
                    <sp:IncludeTimestamp/>
                    <sp:OnlySignEntireHeadersAndBody/>
                    %s
                  </wsp:Policy></sp:AsymmetricBinding>
                  <sp:Wss11><wsp:Policy>
                    <sp:MustSupportRefKeyIdentifier/><sp:MustSupportRefIssuerSerial/>
                    <sp:MustSupportRefThumbprint/><sp:MustSupportRefEncryptedKey/>
                  </wsp:Policy></sp:Wss11>
                  <sp:SignedParts><sp:Body/></sp:SignedParts>
                  <sp:EncryptedParts><sp:Body/></sp:EncryptedParts>
            """.formatted(initiatorInclusion, NEVER, layout, extra);
    }
}
