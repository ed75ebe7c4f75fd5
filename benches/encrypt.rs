//! Encryption throughput of the engine against its floor.
//!
//! `wssgate` runs the whole engine (parse, rewrite, key wrap, AES, base64) on an
//! envelope whose Body holds N bytes of ordinary SOAP content. `floor` does only
//! what cannot be avoided for the same bytes: one RSA-2048 public-key operation,
//! AES over the plaintext and base64 of the ciphertext, with no XML work. Both use
//! the library's own code paths.

mod common;

use common::{envelope, floor};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wssgate::wss::{
    self, Algorithms, DataEncryption, EncryptOptions, KeyTransport, OaepDigest, Profile, Recipient,
};

fn recipient() -> Recipient {
    let cert = wssgate::receiver::KeyPair::generate(&wssgate::receiver::CertSpec {
        serial: 1,
        common_name: "bench receiver".into(),
        ..Default::default()
    })
    .unwrap()
    .cert;
    Recipient::new(cert).unwrap()
}

/// A SOAP 1.1 envelope whose Body carries a document of about `size` bytes as
/// base64 text in one element, the other common shape of large SOAP messages.
pub fn payload_envelope(size: usize) -> Vec<u8> {
    let line: String = (0..76).map(|i| (b'A' + (i % 26) as u8) as char).collect();
    let mut body = String::with_capacity(size + 256);
    body.push_str(r#"<doc:upload xmlns:doc="urn:example:documents"><doc:name>scan.pdf</doc:name><doc:content>"#);
    while body.len() < size {
        body.push_str(&line);
        body.push('\n');
    }
    body.push_str("</doc:content></doc:upload>");
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>{body}</soap:Body></soap:Envelope>"#
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let recipient = recipient();
    let suites = [
        ("aes256-cbc", Profile::Default.algorithms()),
        (
            "aes128-cbc",
            Algorithms {
                data_encryption: DataEncryption::Aes128Cbc,
                ..Profile::Default.algorithms()
            },
        ),
        (
            "aes256-gcm",
            Algorithms {
                data_encryption: DataEncryption::Aes256Gcm,
                key_transport: KeyTransport::RsaOaepMgf1p,
                oaep_digest: OaepDigest::Sha1,
                ..Profile::Modern.algorithms()
            },
        ),
    ];
    for (suite, algorithms) in suites {
        let mut group = c.benchmark_group(format!("encrypt/{suite}"));
        for size in [1 << 10, 10 << 10, 100 << 10, 1 << 20, 10 << 20] {
            if suite != "aes256-cbc" && !matches!(size, 1024 | 1048576) {
                continue;
            }
            let input = envelope(size);
            let body_len = input.len();
            group.throughput(Throughput::Bytes(body_len as u64));
            if size >= 1 << 20 {
                group.sample_size(10);
            }
            let options = EncryptOptions {
                algorithms,
                ..EncryptOptions::default()
            };
            let mut out = Vec::with_capacity(body_len * 2);
            group.bench_with_input(BenchmarkId::new("wssgate", size), &input, |b, input| {
                b.iter(|| {
                    out.clear();
                    wss::encrypt_envelope(&input[..], &mut out, &recipient, &options).unwrap();
                })
            });
            let mut out = Vec::with_capacity(body_len * 2);
            group.bench_with_input(BenchmarkId::new("floor", size), &input, |b, input| {
                b.iter(|| floor(&recipient, &algorithms, input, &mut out))
            });
        }
        group.finish();
    }
    // One Body shape with little markup: a base64 document in one element.
    let algorithms = Profile::Default.algorithms();
    let mut group = c.benchmark_group("encrypt/aes256-cbc-payload");
    let input = payload_envelope(1 << 20);
    group.throughput(Throughput::Bytes(input.len() as u64));
    group.sample_size(10);
    let options = EncryptOptions::default();
    let mut out = Vec::with_capacity(input.len() * 2);
    group.bench_with_input(BenchmarkId::new("wssgate", 1 << 20), &input, |b, input| {
        b.iter(|| {
            out.clear();
            wss::encrypt_envelope(&input[..], &mut out, &recipient, &options).unwrap();
        })
    });
    let mut out = Vec::with_capacity(input.len() * 2);
    group.bench_with_input(BenchmarkId::new("floor", 1 << 20), &input, |b, input| {
        b.iter(|| floor(&recipient, &algorithms, input, &mut out))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
