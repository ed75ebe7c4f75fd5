//! Encrypt one envelope many times and exit: the workload of
//! `benches/instructions.sh`, which counts its instructions under callgrind (a
//! count, not a time: the same on a busy machine as on an idle one).
//!
//!   engine_loop engine|floor SIZE ITERATIONS [aes256-cbc|aes128-cbc|aes256-gcm]

#[path = "../benches/common/mod.rs"]
mod common;

use wssgate::wss::{self, Algorithms, DataEncryption, EncryptOptions, Profile, Recipient};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: engine_loop engine|floor SIZE ITERATIONS [aes256-cbc|aes128-cbc|aes256-gcm]";
    let (Some(what), Some(size), Some(iterations)) = (
        args.get(1),
        args.get(2).and_then(|s| s.parse::<usize>().ok()),
        args.get(3).and_then(|s| s.parse::<usize>().ok()),
    ) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let data_encryption = match args.get(4).map_or("aes256-cbc", String::as_str) {
        "aes256-cbc" => DataEncryption::Aes256Cbc,
        "aes128-cbc" => DataEncryption::Aes128Cbc,
        "aes256-gcm" => DataEncryption::Aes256Gcm,
        other => {
            eprintln!("unknown data encryption {other:?}\n{usage}");
            std::process::exit(2);
        }
    };
    let algorithms = Algorithms {
        data_encryption,
        ..Profile::Default.algorithms()
    };
    // A fixed certificate (no key generation): the same instructions every run.
    let cert = openssl::x509::X509::from_pem(include_bytes!("../benches/data/receiver-2048.pem"))
        .expect("the bench certificate");
    let recipient = Recipient::new(cert).expect("an RSA certificate");
    let input = common::envelope(size);
    let options = EncryptOptions {
        algorithms,
        ..EncryptOptions::default()
    };
    let mut out = Vec::with_capacity(input.len() * 2);
    for _ in 0..iterations {
        match what.as_str() {
            // As the daemon encrypts a buffered request: the whole envelope in
            // memory, a fresh output.
            "engine" => {
                let (encrypted, _) = wss::encrypt_to_vec(&input, &recipient, &options)
                    .expect("the envelope encrypts");
                out = encrypted;
            }
            "floor" => common::floor(&recipient, &algorithms, &input, &mut out),
            other => {
                eprintln!("unknown workload {other:?}\n{usage}");
                std::process::exit(2);
            }
        }
    }
    println!("{} bytes in, {} bytes out", input.len(), out.len());
}
