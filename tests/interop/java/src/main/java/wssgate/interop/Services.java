// Apache CXF 4 JAX-WS services behind WS-SecurityPolicy: an encrypt-only
// AsymmetricBinding (the request Body must be encrypted for the service's key; nothing
// is signed) for each algorithm suite, SOAP 1.1 and 1.2, with CXF's DOM receiver and
// with its streaming one (ws-security.enable.streaming). Each service answers
// <ord:received> holding the base64 of the decrypted payload after exclusive C14N; a
// request that does not satisfy the policy gets CXF's SOAP Fault.
//
// The policy is attached to the operation's input message only: the answer goes
// back in the clear, as an encrypt-only client expects. SignedServices.java adds
// services whose policy also wants the request signed, on the same port.

package wssgate.interop;

import jakarta.xml.ws.Provider;
import jakarta.xml.ws.Service;
import jakarta.xml.ws.ServiceMode;
import jakarta.xml.ws.WebServiceProvider;
import jakarta.xml.ws.soap.SOAPBinding;
import java.io.*;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import javax.security.auth.callback.CallbackHandler;
import javax.xml.namespace.QName;
import javax.xml.transform.Source;
import javax.xml.transform.TransformerFactory;
import javax.xml.transform.dom.DOMResult;
import javax.xml.transform.stream.StreamSource;
import org.apache.cxf.BusFactory;
import org.apache.cxf.interceptor.Fault;
import org.apache.cxf.message.Message;
import org.apache.cxf.phase.AbstractPhaseInterceptor;
import org.apache.cxf.phase.Phase;
import org.apache.cxf.jaxws.EndpointImpl;
import org.apache.wss4j.common.crypto.Crypto;
import org.w3c.dom.*;

final class Services {
    private Services() {}

    static final String NS = "urn:wssgate:interop";

    /** Suites as WS-SecurityPolicy names them (and CXF's own GCM suite). */
    static final String[][] SUITES = {
        {"basic256", "<sp:Basic256/>"},
        {"basic256sha256", "<sp:Basic256Sha256/>"},
        {"basic128", "<sp:Basic128/>"},
        {"cxf-basic256gcm", "<cxf:Basic256GCM xmlns:cxf=\"http://cxf.apache.org/custom/security-policy\"/>"},
    };

    @WebServiceProvider(serviceName = "OrdersService", portName = "OrdersPort", targetNamespace = NS)
    @ServiceMode(Service.Mode.PAYLOAD)
    public static final class Orders implements Provider<Source> {
        @Override
        public Source invoke(Source request) {
            try {
                DOMResult dom = new DOMResult();
                TransformerFactory.newInstance().newTransformer().transform(request, dom);
                Node n = dom.getNode();
                Node payload = n instanceof Document d ? d.getDocumentElement() : n.getFirstChild();
                String c14n = Harness.canonical(payload);
                String b64 = Base64.getEncoder().encodeToString(c14n.getBytes(StandardCharsets.UTF_8));
                return new StreamSource(new StringReader(
                        "<ord:received xmlns:ord=\"urn:orders\">" + b64 + "</ord:received>"));
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        }
    }

    /** A request starts with an empty log buffer on its thread. */
    static final class ForgetLog extends AbstractPhaseInterceptor<Message> {
        ForgetLog() {
            super(Phase.RECEIVE);
        }

        @Override
        public void handleMessage(Message message) {
            LogCapture.take();
        }
    }

    /** The fault of a refused request carries what WSS4J logged while refusing it. */
    static final class ReasonInFault extends AbstractPhaseInterceptor<Message> {
        ReasonInFault() {
            super(Phase.PRE_STREAM);
        }

        @Override
        public void handleMessage(Message message) {
            String log = LogCapture.take();
            if (message.getContent(Exception.class) instanceof Fault f && !log.isEmpty()) {
                f.setMessage(f.getMessage() + " [log: " + log + "]");
            }
        }
    }

    /** Publishes the encrypt-only services, and the signing ones of SignedServices.java
     *  when a trusted signer is given (its certificate as PEM, `signer`; `verifier` the
     *  crypto that trusts it), all on one port. */
    static void run(Crypto crypto, CallbackHandler passwords, Crypto verifier) throws Exception {
        // A free loopback port for Jetty (CXF reports the port it was given, so not 0).
        int port;
        try (ServerSocket s = new ServerSocket(0, 1, InetAddress.getLoopbackAddress())) {
            port = s.getLocalPort();
        }
        Path wsdls = Files.createTempDirectory("wssgate-cxf");
        List<String> paths = new ArrayList<>();
        for (String[] suite : SUITES) {
            for (String soap : new String[] {"soap11", "soap12"}) {
                for (String receiver : new String[] {"dom", "stax"}) {
                    String path = "/" + suite[0] + "/" + soap + "/" + receiver;
                    publish(wsdls, port, path, encryptOnlyPolicy(suite[1]), soap, receiver,
                            properties(crypto, passwords, receiver));
                    paths.add(path);
                }
            }
        }
        if (verifier != null) {
            paths.addAll(SignedServices.publish(wsdls, port, crypto, passwords, verifier));
        }
        System.out.println("listening\t" + port + "\t" + String.join(",", paths));
        System.out.flush();
        // Serve until the test closes our standard input.
        while (System.in.read() != -1) { }
        BusFactory.getDefaultBus().shutdown(true);
        // The published WSDL copies go with the services.
        try (var walk = Files.walk(wsdls)) {
            walk.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
        System.exit(0);
    }

    /** The endpoint properties every service shares: `crypto` holds the service's key. */
    static Map<String, Object> properties(Crypto crypto, CallbackHandler passwords, String receiver) {
        Map<String, Object> props = new HashMap<>();
        props.put("security.callback-handler", passwords);
        // On the receiving side the signature crypto is the one that decrypts.
        props.put("security.signature.crypto", crypto);
        props.put("security.signature.username", "receiver");
        // The fault says why, so the test can tell a refusal by design from another.
        props.put("ws-security.return.security.error", "true");
        props.put("ws-security.enable.streaming", receiver.equals("stax") ? "true" : "false");
        return props;
    }

    /** One Orders endpoint at `path` behind the policy `policy` (a wsp:Policy's content). */
    static void publish(Path wsdls, int port, String path, String policy, String soap, String receiver,
                        Map<String, Object> props) throws IOException {
        String address = "http://127.0.0.1:" + port + path;
        Path wsdl = wsdls.resolve(path.substring(1).replace('/', '-') + ".wsdl");
        Files.writeString(wsdl, wsdl(policy, soap.equals("soap12"), address));
        String binding = soap.equals("soap12") ? SOAPBinding.SOAP12HTTP_BINDING : SOAPBinding.SOAP11HTTP_BINDING;
        EndpointImpl ep = new EndpointImpl(BusFactory.getDefaultBus(), new Orders(), binding);
        ep.setWsdlLocation(wsdl.toUri().toString());
        ep.setServiceName(new QName(NS, "OrdersService"));
        ep.setEndpointName(new QName(NS, "OrdersPort"));
        ep.setProperties(props);
        ep.getInInterceptors().add(new ForgetLog());
        ep.getOutFaultInterceptors().add(new ReasonInFault());
        ep.publish(address);
    }

    static String encryptOnlyPolicy(String suite) {
        return """
                  <sp:AsymmetricBinding><wsp:Policy>
                    <sp:RecipientToken><wsp:Policy>
                      <sp:X509Token sp:IncludeToken="http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200702/IncludeToken/Never">
                        <wsp:Policy><sp:WssX509V3Token10/></wsp:Policy>
                      </sp:X509Token>
                    </wsp:Policy></sp:RecipientToken>
                    <sp:AlgorithmSuite><wsp:Policy>%s</wsp:Policy></sp:AlgorithmSuite>
                    <sp:Layout><wsp:Policy><sp:Lax/></wsp:Policy></sp:Layout>
                  </wsp:Policy></sp:AsymmetricBinding>
                  <sp:Wss11><wsp:Policy>
                    <sp:MustSupportRefKeyIdentifier/><sp:MustSupportRefIssuerSerial/>
                    <sp:MustSupportRefThumbprint/><sp:MustSupportRefEncryptedKey/>
                  </wsp:Policy></sp:Wss11>
                  <sp:EncryptedParts><sp:Body/></sp:EncryptedParts>
            """.formatted(suite);
    }

    /** The Orders WSDL, `policy` on the operation's input message. */
    static String wsdl(String policy, boolean soap12, String address) {
        String soapNs = soap12 ? "http://schemas.xmlsoap.org/wsdl/soap12/" : "http://schemas.xmlsoap.org/wsdl/soap/";
        return """
            <wsdl:definitions name="Orders" targetNamespace="urn:wssgate:interop"
                xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/" xmlns:soap="%s"
                xmlns:tns="urn:wssgate:interop" xmlns:ord="urn:orders"
                xmlns:xsd="http://www.w3.org/2001/XMLSchema"
                xmlns:wsp="http://www.w3.org/ns/ws-policy"
                xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
                xmlns:sp="http://docs.oasis-open.org/ws-sx/ws-securitypolicy/200702">
              <wsp:Policy wsu:Id="RequestPolicy">
                <wsp:ExactlyOne><wsp:All>
%s                </wsp:All></wsp:ExactlyOne>
              </wsp:Policy>
              <wsdl:types>
                <xsd:schema targetNamespace="urn:orders" elementFormDefault="qualified">
                  <xsd:element name="submit" type="xsd:anyType"/>
                  <xsd:element name="received" type="xsd:string"/>
                </xsd:schema>
              </wsdl:types>
              <wsdl:message name="submitRequest"><wsdl:part name="in" element="ord:submit"/></wsdl:message>
              <wsdl:message name="submitResponse"><wsdl:part name="out" element="ord:received"/></wsdl:message>
              <wsdl:portType name="Orders">
                <wsdl:operation name="submit">
                  <wsdl:input message="tns:submitRequest"/><wsdl:output message="tns:submitResponse"/>
                </wsdl:operation>
              </wsdl:portType>
              <wsdl:binding name="OrdersBinding" type="tns:Orders">
                <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
                <wsdl:operation name="submit">
                  <soap:operation soapAction=""/>
                  <wsdl:input><wsp:PolicyReference URI="#RequestPolicy"/><soap:body use="literal"/></wsdl:input>
                  <wsdl:output><soap:body use="literal"/></wsdl:output>
                </wsdl:operation>
              </wsdl:binding>
              <wsdl:service name="OrdersService">
                <wsdl:port name="OrdersPort" binding="tns:OrdersBinding"><soap:address location="%s"/></wsdl:port>
              </wsdl:service>
            </wsdl:definitions>
            """.formatted(soapNs, policy, address);
    }
}
