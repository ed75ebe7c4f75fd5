//! No decryption oracle (Jager and Somorovsky, "How to break XML Encryption",
//! CCS 2011): an unknown key, a bad padding, a bad GCM tag and a plaintext that
//! does not parse must look alike to the sender — one answer, and no
//! difference in the work done that a clock could measure. The decryptor does
//! the same private-key work for an unknown key as for a known one, and
//! continues a failed rsa-1_5 unwrap with a random key; [`classify`] is the
//! one place that decides which errors the caller may be told apart.

use openssl::rsa::Padding;
use roxmltree::Node;

use super::super::algorithms::{DataEncryption, ns};
use super::super::cipher;
use super::super::keys::PrivateKeyEntry;
use super::{DecryptError, child};

/// What a caller may learn of a failed decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The message holds no EncryptedKey at all.
    NotEncrypted,
    /// The message could not be read as XML (before any key was used).
    Malformed,
    /// Over an XML limit (before any key was used).
    Limit,
    /// Everything else, whatever the cause: one answer.
    DecryptionFailed,
}

/// The answer class of a decryption error; the error itself is for the log,
/// at debug level.
pub fn classify(e: &DecryptError) -> Failure {
    match e {
        DecryptError::NoEncryptedKey => Failure::NotEncrypted,
        DecryptError::Parse(_) | DecryptError::Encoding(_) | DecryptError::Read(_) => {
            Failure::Malformed
        }
        DecryptError::Limit(_) | DecryptError::TooManyEncryptedKeys => Failure::Limit,
        _ => Failure::DecryptionFailed,
    }
}

/// One private-key operation with the first key, its result thrown away: the
/// work of an unwrap, for an EncryptedKey no key matches.
pub(super) fn equal_work(keys: &[&PrivateKeyEntry], ek: Node<'_, '_>) {
    let Some(entry) = keys.first() else {
        return;
    };
    let Ok(rsa) = entry.key.rsa() else {
        return;
    };
    let size = rsa.size() as usize;
    let mut block = super::cipher_value(ek).unwrap_or_default();
    block.resize(size, 0);
    // Below the modulus whatever the sender wrote.
    block[0] = 0;
    let mut out = vec![0u8; size];
    let _ = rsa.private_decrypt(&block, &mut out, Padding::NONE);
}

/// The content key length the first EncryptedData an EncryptedKey is for
/// expects.
pub(super) fn expected_key_len(targets: &[Node<'_, '_>]) -> Option<usize> {
    let method = child(*targets.first()?, ns::XENC, "EncryptionMethod")?;
    DataEncryption::from_uri(method.attribute("Algorithm")?).map(DataEncryption::key_len)
}

/// A random content key (implicit rejection).
pub(super) fn random_key(len: usize) -> Result<Vec<u8>, DecryptError> {
    Ok(cipher::random_bytes(len)?)
}
