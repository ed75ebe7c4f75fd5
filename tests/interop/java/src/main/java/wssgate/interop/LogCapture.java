// What WSS4J logs while it refuses a message, kept per thread. WSS4J's exceptions
// name only a generic error code ("invalid security"); the reason (which algorithm
// did not meet which requirement) goes to its log. Standard error is teed into a
// per-thread buffer, so a receiver can attach the reason to the case or the fault
// that the same thread produces.

package wssgate.interop;

import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;

final class LogCapture extends OutputStream {
    private static final ThreadLocal<ByteArrayOutputStream> BUFFER =
            ThreadLocal.withInitial(ByteArrayOutputStream::new);
    private final PrintStream real;

    private LogCapture(PrintStream real) {
        this.real = real;
    }

    /** Before the first logger exists: slf4j-simple at WARN, on standard error. */
    static void install() {
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        // The DOM receiver says why it refuses RSA-1.5 only at debug level.
        System.setProperty("org.slf4j.simpleLogger.log.org.apache.wss4j.dom.processor.EncryptedKeyProcessor", "debug");
        // CXF's own warnings (a stack trace per refused request) say nothing new.
        System.setProperty("org.slf4j.simpleLogger.log.org.apache.cxf", "error");
        System.setProperty("org.slf4j.simpleLogger.showThreadName", "false");
        System.setProperty("org.slf4j.simpleLogger.showShortLogName", "true");
        System.setErr(new PrintStream(new LogCapture(System.err), true, StandardCharsets.UTF_8));
    }

    /** What this thread logged since the last call, on one line. */
    static String take() {
        ByteArrayOutputStream b = BUFFER.get();
        String s = b.toString(StandardCharsets.UTF_8).replace('\n', ' ').replace('\t', ' ').trim();
        b.reset();
        return s;
    }

    @Override
    public void write(int b) {
        BUFFER.get().write(b);
        real.write(b);
    }

    @Override
    public void write(byte[] b, int off, int len) {
        BUFFER.get().write(b, off, len);
        real.write(b, off, len);
    }

    @Override
    public void flush() {
        real.flush();
    }
}
