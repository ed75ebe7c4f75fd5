//! Envelopes and the encryption floor shared by the benchmarks.

use std::hint::black_box;
use std::io::Write;

use wssgate::wss::cipher::{self, EncryptingWriter};
use wssgate::wss::{Algorithms, Recipient};

/// A SOAP 1.1 envelope whose Body content is about `size` bytes of order lines.
pub fn envelope(size: usize) -> Vec<u8> {
    let mut body = String::with_capacity(size + 256);
    body.push_str(r#"<ord:submit xmlns:ord="urn:example:orders">"#);
    let mut i = 0;
    while body.len() < size {
        body.push_str(&format!(
            r#"<ord:line no="{i}"><ord:sku>SKU-{i:08}</ord:sku><ord:qty>3</ord:qty><ord:note>caf&#233; &amp; more</ord:note></ord:line>"#
        ));
        i += 1;
    }
    body.push_str("</ord:submit>");
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header/><soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
    .into_bytes()
}

/// RSA key transport + AES + base64 over `plaintext`, no XML.
#[allow(dead_code)] // not every bench measures the floor
pub fn floor(recipient: &Recipient, algorithms: &Algorithms, plaintext: &[u8], out: &mut Vec<u8>) {
    out.clear();
    // The key and the IV in one draw, as the engine draws them.
    let key_len = algorithms.data_encryption.key_len();
    let mut key = cipher::random_bytes(key_len + algorithms.data_encryption.iv_len()).unwrap();
    let iv = key.split_off(key_len);
    let wrapped = recipient
        .key_wrap()
        .wrap(algorithms.key_transport, algorithms.oaep_digest, &key)
        .unwrap();
    black_box(wrapped);
    let mut w = EncryptingWriter::with_iv(out, algorithms.data_encryption, &key, iv).unwrap();
    w.write_all(plaintext).unwrap();
    w.finish().unwrap();
}
