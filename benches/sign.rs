//! The buffered signing path: time and peak memory per message size.
//!
//! `sign-only`, `sign-then-encrypt` and `encrypt-then-sign` run the whole engine
//! (`sign_to_vec` on the buffered request: the Id and header pass, one canonicalization pass that
//! digests every part, RSA-2048 signature, the streaming encryptor on the buffer);
//! `encrypt-only` is the streaming encryptor alone on the same envelope, the cost
//! signing adds to. Before the timings, each case runs once on the largest size
//! with the process's peak resident memory reset (Linux `clear_refs`), and the
//! growth of the peak over the resident memory before it is printed: what one
//! buffered message of that size costs.

use std::hint::black_box;

mod common;

use common::envelope;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use wssgate::receiver::{CertSpec, KeyPair};
use wssgate::wss::{self, EncryptOptions, Recipient, SignOrder, SignPlan, SigningKey};

fn key_pair(name: &str) -> KeyPair {
    KeyPair::generate(&CertSpec {
        common_name: name.into(),
        ..CertSpec::default()
    })
    .unwrap()
}

/// Kibibytes in a `/proc/self/status` line.
fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Growth of the peak resident memory over the resident memory before `run`.
fn peak_growth_kib(run: impl FnOnce()) -> Option<u64> {
    std::fs::write("/proc/self/clear_refs", "5").ok()?;
    let before = status_kib("VmRSS:")?;
    run();
    Some(status_kib("VmHWM:")?.saturating_sub(before))
}

type Case<'a> = (&'static str, Box<dyn Fn(&[u8]) -> usize + 'a>);

fn bench(c: &mut Criterion) {
    let signer = key_pair("bench signer");
    let key = SigningKey::new(signer.key.clone(), signer.cert.clone()).unwrap();
    let recipient = Recipient::new(key_pair("bench receiver").cert).unwrap();
    let options = EncryptOptions::default();
    let sign = |order: Option<SignOrder>| {
        let plan = SignPlan {
            order: order.unwrap_or(SignOrder::SignThenEncrypt),
            ..SignPlan::default()
        };
        let key = &key;
        let recipient = &recipient;
        let options = &options;
        move |input: &[u8]| {
            let rx = order.map(|_| recipient);
            wss::sign_to_vec(input, key, &plan, rx, options)
                .unwrap()
                .bytes
                .len()
        }
    };
    let cases: Vec<Case<'_>> = vec![
        ("sign-only", Box::new(sign(None))),
        (
            "sign-then-encrypt",
            Box::new(sign(Some(SignOrder::SignThenEncrypt))),
        ),
        (
            "encrypt-then-sign",
            Box::new(sign(Some(SignOrder::EncryptThenSign))),
        ),
        (
            "encrypt-only",
            Box::new(|input: &[u8]| {
                let mut out = Vec::with_capacity(input.len() * 2);
                wss::encrypt_envelope(input, &mut out, &recipient, &options).unwrap();
                out.len()
            }),
        ),
    ];
    let largest = envelope(16 << 20);
    for (name, run) in &cases {
        let mut out_len = 0;
        match peak_growth_kib(|| out_len = run(&largest)) {
            Some(kib) => eprintln!(
                "memory {name}: {} MiB input, {} MiB output, peak resident memory +{} MiB",
                largest.len() >> 20,
                out_len >> 20,
                kib >> 10
            ),
            None => eprintln!("memory {name}: /proc/self/clear_refs not available"),
        }
    }
    for (name, run) in &cases {
        let mut group = c.benchmark_group(format!("sign/{name}"));
        for size in [10 << 10, 1 << 20, 16 << 20] {
            let input = envelope(size);
            group.throughput(Throughput::Bytes(input.len() as u64));
            if size >= 1 << 20 {
                group.sample_size(10);
            }
            group.bench_with_input(BenchmarkId::from_parameter(size), &input, |b, input| {
                b.iter(|| black_box(run(input)))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
