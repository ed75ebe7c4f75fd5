//! `wssgate encrypt` and `wssgate decrypt`: one message from a file or standard
//! input, to a file or standard output — written only once the command has
//! succeeded, so a failure leaves no partial output anywhere.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use clap::builder::TypedValueParser as _;

use super::{Failure, read_file, read_password};
use crate::wss::{
    self, AlgorithmOverrides, Algorithms, CertificatePolicy, DataEncryption, EncryptOptions,
    IssuerNameFormat, KeyIdentifier, KeyTransport, Limits, OaepDigest, Profile, Recipient,
};

/// A clap parser for one of the engine's named algorithms: its possible values
/// are listed in `--help` and in the usage error, and parse into the typed value.
macro_rules! one_of {
    ($ty:ty) => {
        clap::builder::PossibleValuesParser::new(<$ty>::ALL.iter().map(|v| v.name()))
            .try_map(|s: String| s.parse::<$ty>())
    };
}

#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// The receiver's X.509 certificate (PEM or DER).
    #[arg(long, value_name = "CERT.pem")]
    pub cert: PathBuf,
    /// Named algorithm suite.
    #[arg(long, default_value = "default", value_parser = one_of!(Profile))]
    pub profile: Profile,
    /// Key identifier (overrides the profile).
    #[arg(long = "key-id", value_name = "ID", value_parser = one_of!(KeyIdentifier))]
    pub key_id: Option<KeyIdentifier>,
    /// How issuer-serial writes the issuer (overrides the profile).
    #[arg(long = "issuer-name-format", value_name = "FORMAT", value_parser = one_of!(IssuerNameFormat))]
    pub issuer_name_format: Option<IssuerNameFormat>,
    /// Data encryption (overrides the profile).
    #[arg(long = "enc", value_name = "ALG", value_parser = one_of!(DataEncryption))]
    pub enc: Option<DataEncryption>,
    /// Key transport (overrides the profile; rsa-1_5 needs --allow-legacy).
    #[arg(long = "key-transport", value_name = "ALG", value_parser = one_of!(KeyTransport))]
    pub key_transport: Option<KeyTransport>,
    /// OAEP digest (rsa-oaep: also its MGF1; rsa-oaep-mgf1p: MGF1 stays SHA-1).
    #[arg(long = "oaep-digest", value_name = "DIGEST", value_parser = one_of!(OaepDigest))]
    pub oaep_digest: Option<OaepDigest>,
    /// Permit rsa-1_5 key transport.
    #[arg(long)]
    pub allow_legacy: bool,
    /// Do not mark a newly created Security header mustUnderstand.
    #[arg(long)]
    pub no_must_understand: bool,
    /// Deepest element nesting accepted (the Envelope is depth 1).
    #[arg(long, default_value_t = 256)]
    pub max_depth: usize,
    #[arg(short = 'i', value_name = "IN")]
    pub input: Option<PathBuf>,
    #[arg(short = 'o', value_name = "OUT")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// Private keys: PEM files with key and certificate, or PKCS#12 (.p12/.pfx); comma separated or repeated.
    #[arg(
        long,
        value_name = "KEY.pem[,KEY2.pem…]",
        value_delimiter = ',',
        required = true
    )]
    pub key: Vec<PathBuf>,
    /// File holding the PKCS#12 password (first line).
    #[arg(long, value_name = "F")]
    pub password_file: Option<PathBuf>,
    #[arg(short = 'i', value_name = "IN")]
    pub input: Option<PathBuf>,
    #[arg(short = 'o', value_name = "OUT")]
    pub output: Option<PathBuf>,
}

fn open_input(path: Option<&Path>) -> Result<Box<dyn Read>, Failure> {
    Ok(match path {
        Some(p) => Box::new(
            File::open(p)
                .map_err(|e| Failure::invalid(format!("cannot open {}: {e}", p.display())))?,
        ),
        None => Box::new(io::stdin().lock()),
    })
}

/// Where output goes until the command has succeeded: a temporary file beside the
/// target (renamed into place), or a spooled buffer copied to stdout at the end.
/// A failed command leaves no partial output anywhere.
enum PendingOutput {
    File {
        temp: tempfile::NamedTempFile,
        target: PathBuf,
    },
    Stdout(tempfile::SpooledTempFile),
}

impl PendingOutput {
    fn new(target: Option<&Path>) -> Result<PendingOutput, Failure> {
        Ok(match target {
            Some(t) => {
                let dir = t
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."));
                let temp = tempfile::NamedTempFile::new_in(dir).map_err(|e| {
                    Failure::runtime(format!("cannot write beside {}: {e}", t.display()))
                })?;
                PendingOutput::File {
                    temp,
                    target: t.to_path_buf(),
                }
            }
            None => PendingOutput::Stdout(tempfile::SpooledTempFile::new(8 * 1024 * 1024)),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        match self {
            PendingOutput::File { temp, .. } => temp,
            PendingOutput::Stdout(s) => s,
        }
    }

    fn commit(self, stdout: &mut dyn Write) -> Result<(), Failure> {
        match self {
            PendingOutput::File { temp, target } => {
                temp.as_file()
                    .sync_all()
                    .map_err(|e| Failure::runtime(format!("cannot write output: {e}")))?;
                temp.persist(&target).map_err(|e| {
                    Failure::runtime(format!("cannot write {}: {}", target.display(), e.error))
                })?;
                Ok(())
            }
            PendingOutput::Stdout(mut s) => {
                s.rewind()
                    .map_err(|e| Failure::runtime(format!("cannot write output: {e}")))?;
                io::copy(&mut s, stdout).and_then(|_| stdout.flush())?;
                Ok(())
            }
        }
    }
}

pub fn encrypt(args: EncryptArgs, stdout: &mut dyn Write) -> Result<(), Failure> {
    let overrides = AlgorithmOverrides {
        key_identifier: args.key_id,
        issuer_name_format: args.issuer_name_format,
        data_encryption: args.enc,
        key_transport: args.key_transport,
        oaep_digest: args.oaep_digest,
    };
    let algorithms = Algorithms::resolve(args.profile, overrides, args.allow_legacy)
        .map_err(Failure::invalid)?;
    let cert_bytes = read_file(&args.cert)?;
    let recipient = Recipient::from_bytes(&cert_bytes)
        .map_err(|e| Failure::invalid(format!("{}: {e}", args.cert.display())))?;
    let policy = CertificatePolicy::for_key_identifiers(
        CertificatePolicy::default().min_rsa_bits,
        [algorithms.key_identifier],
    );
    recipient
        .check(&policy)
        .map_err(|e| Failure::invalid(format!("{}: {e}", args.cert.display())))?;
    let options = EncryptOptions {
        algorithms,
        must_understand: !args.no_must_understand,
        limits: Limits {
            max_depth: args.max_depth,
            max_bytes: None,
            ..Limits::default()
        },
    };
    let input = open_input(args.input.as_deref())?;
    let mut output = PendingOutput::new(args.output.as_deref())?;
    wss::encrypt_envelope(input, output.writer(), &recipient, &options).map_err(|e| {
        if e.is_input_error() || matches!(e, wss::EncryptError::Certificate(_)) {
            Failure::invalid(e)
        } else {
            Failure::runtime(e)
        }
    })?;
    output.commit(stdout)
}

pub fn decrypt(args: DecryptArgs, stdout: &mut dyn Write) -> Result<(), Failure> {
    let password = read_password(args.password_file.as_deref())?;
    let mut keys = wss::keys::KeyRing::default();
    for path in &args.key {
        keys.load_file(path, password.as_deref())
            .map_err(Failure::invalid)?;
    }
    let mut document = Vec::new();
    open_input(args.input.as_deref())?
        .read_to_end(&mut document)
        .map_err(|e| Failure::runtime(format!("reading the input failed: {e}")))?;
    let (plain, _summary) =
        wss::decrypt::decrypt_document(&document, &keys).map_err(Failure::invalid)?;
    let mut output = PendingOutput::new(args.output.as_deref())?;
    output
        .writer()
        .write_all(&plain)
        .map_err(|e| Failure::runtime(format!("cannot write output: {e}")))?;
    output.commit(stdout)
}
