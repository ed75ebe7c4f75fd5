//! Can the Body's XML checks hide under AES-CBC? An experiment, not the engine.
//!
//! CBC encryption is one dependent chain: each block waits for the one before
//! (AES-256: 14 rounds of several cycles each), and the core's other execution
//! ports sit idle meanwhile. The engine today scans the Body and then encrypts
//! it, so it pays for both one after the other. This bench measures, on the
//! 100 KiB dense body of `benches/encrypt.rs`:
//!
//! - `walk`: a token walker with the shape of the Body scanner's work (find
//!   markup, hash each name, keep a stack of open elements, skip references);
//! - `openssl`: AES-256-CBC over the same bytes in one OpenSSL call;
//! - `inline`: AES-256-CBC one block at a time through a block cipher whose
//!   rounds run in the caller's loop (the `aes` crate, AES-NI when present);
//! - the walk followed by OpenSSL (what the engine does), the walk with OpenSSL
//!   called on every 64 bytes it accepts, and the walk with one inline block
//!   encrypted after each token.
//!
//! If the last row costs about as much as the larger of `walk` and `inline`
//! rather than their sum, the checks are free under the cipher's latency.
//! Prints a Markdown table, best of `ROUNDS` (5); nothing is asserted.
//!
//!   cargo bench --bench interleave

#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use aes::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use openssl::symm::{Cipher, Crypter, Mode};

const KEY: [u8; 32] = [7; 32];
const IV: [u8; 16] = [9; 16];
const BLOCK: usize = 16;

/// One token from `i`: text up to markup, a reference, or a tag. Returns where
/// the next token starts.
#[inline(always)]
fn token(d: &[u8], mut i: usize, open: &mut Vec<u64>, seen: &mut u64) -> usize {
    while i < d.len() && d[i] != b'<' && d[i] != b'&' {
        i += 1;
    }
    if i >= d.len() {
        return i;
    }
    if d[i] == b'&' {
        while i < d.len() && d[i] != b';' {
            i += 1;
        }
        return i + 1;
    }
    let closing = d.get(i + 1) == Some(&b'/');
    let mut name = 0u64;
    i += 1;
    while i < d.len() && d[i] != b'>' && d[i] != b' ' {
        name = name.wrapping_mul(31).wrapping_add(u64::from(d[i]));
        i += 1;
    }
    while i < d.len() && d[i] != b'>' {
        *seen += u64::from(d[i] == b'"');
        i += 1;
    }
    if closing {
        *seen ^= open.pop().unwrap_or(0) ^ name;
    } else {
        open.push(name);
    }
    i + 1
}

fn walk(d: &[u8]) -> u64 {
    let (mut open, mut seen, mut i) = (Vec::new(), 0, 0);
    while i < d.len() {
        i = token(d, i, &mut open, &mut seen);
    }
    seen
}

/// CBC by hand over a block cipher whose rounds are inlined into the caller.
struct InlineCbc {
    cipher: aes::Aes256,
    chain: [u8; BLOCK],
}

impl InlineCbc {
    fn new() -> Self {
        InlineCbc {
            cipher: aes::Aes256::new(&GenericArray::from(KEY)),
            chain: IV,
        }
    }

    #[inline(always)]
    fn block(&mut self, plain: &[u8], out: &mut [u8]) {
        let mut b = [0u8; BLOCK];
        for k in 0..BLOCK {
            b[k] = plain[k] ^ self.chain[k];
        }
        let mut block = GenericArray::from(b);
        self.cipher.encrypt_block(&mut block);
        self.chain = block.into();
        out.copy_from_slice(&self.chain);
    }
}

fn openssl_crypter() -> Crypter {
    let mut c = Crypter::new(Cipher::aes_256_cbc(), Mode::Encrypt, &KEY, Some(&IV)).unwrap();
    c.pad(false);
    c
}

/// Best time of `rounds` runs of `iterations` calls, in microseconds per call.
fn best(rounds: usize, iterations: usize, mut f: impl FnMut()) -> f64 {
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            start.elapsed().as_secs_f64() * 1e6 / iterations as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let iterations = 1000;
    let envelope = common::envelope(100 * 1024);
    // Whole blocks of the envelope: the walker sees real markup, the ciphers
    // need no padding.
    let d = &envelope[..envelope.len() / BLOCK * BLOCK];
    let mut out = vec![0u8; d.len() + BLOCK];

    let walk_alone = best(rounds, iterations, || {
        black_box(walk(black_box(d)));
    });
    let openssl_alone = best(rounds, iterations, || {
        openssl_crypter().update(d, &mut out).unwrap();
        black_box(&out);
    });
    let inline_alone = best(rounds, iterations, || {
        let mut cbc = InlineCbc::new();
        for (plain, o) in d.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BLOCK)) {
            cbc.block(plain, o);
        }
        black_box(&out);
    });
    let then_openssl = best(rounds, iterations, || {
        black_box(walk(black_box(d)));
        openssl_crypter().update(d, &mut out).unwrap();
        black_box(&out);
    });
    let openssl_every_64 = best(rounds, iterations, || {
        let mut c = openssl_crypter();
        let (mut open, mut seen, mut i, mut done) = (Vec::new(), 0, 0, 0);
        while i < d.len() {
            i = token(d, i, &mut open, &mut seen);
            if done + 64 <= i.min(d.len()) {
                c.update(&d[done..done + 64], &mut out[done..]).unwrap();
                done += 64;
            }
        }
        c.update(&d[done..], &mut out[done..]).unwrap();
        black_box((seen, &out));
    });
    let inline_per_token = best(rounds, iterations, || {
        let mut cbc = InlineCbc::new();
        let (mut open, mut seen, mut i, mut done) = (Vec::new(), 0, 0, 0);
        while i < d.len() {
            i = token(d, i, &mut open, &mut seen);
            if done + BLOCK <= i.min(d.len()) {
                cbc.block(&d[done..done + BLOCK], &mut out[done..done + BLOCK]);
                done += BLOCK;
            }
        }
        while done < d.len() {
            cbc.block(&d[done..done + BLOCK], &mut out[done..done + BLOCK]);
            done += BLOCK;
        }
        black_box((seen, &out));
    });

    println!("{} bytes, best of {rounds} runs of {iterations}\n", d.len());
    println!("| run | µs per body | against walk + openssl one after the other |");
    println!("|---|---|---|");
    let sum = walk_alone + openssl_alone;
    for (name, t) in [
        ("walk alone", walk_alone),
        ("openssl AES-256-CBC alone", openssl_alone),
        ("inline AES-256-CBC alone", inline_alone),
        ("walk, then openssl (today's order)", then_openssl),
        ("walk, openssl on every 64 bytes", openssl_every_64),
        ("walk, one inline block per token", inline_per_token),
    ] {
        println!("| {name} | {t:.1} | {:.2} |", t / sum);
    }
}
