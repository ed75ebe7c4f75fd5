//! The cryptography of one message: a fresh content key, the RSA key transport
//! that wraps it for the receiver, and a streaming symmetric cipher whose output
//! is base64 text ready for `xenc:CipherValue`.
//!
//! Everything runs on OpenSSL; randomness is OpenSSL's CSPRNG. Nothing here knows
//! about XML beyond the base64 alphabet.

use std::io::{self, Write};
use std::sync::{Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use openssl::cipher::{Cipher, CipherRef};
use openssl::cipher_ctx::CipherCtx;
use openssl::encrypt::Decrypter;
use openssl::hash::MessageDigest;
use openssl::md::{Md, MdRef};
use openssl::pkey::{PKey, Private, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::symm::{Crypter, Mode};

use super::algorithms::{DataEncryption, GCM_TAG_LEN, KeyTransport, OaepDigest};

mod stepped;
use stepped::{BLOCK, SteppedCbc};

/// A failure inside OpenSSL while encrypting or decrypting.
#[derive(Debug, thiserror::Error)]
pub enum CipherError {
    #[error("openssl {operation} failed: {reason}")]
    OpenSsl {
        operation: &'static str,
        reason: String,
    },
    #[error("ciphertext is malformed: {0}")]
    Malformed(&'static str),
    #[error("GCM authentication tag does not match (wrong key or altered message)")]
    TagMismatch,
}

impl CipherError {
    fn openssl(operation: &'static str) -> impl FnOnce(openssl::error::ErrorStack) -> CipherError {
        move |e| CipherError::OpenSsl {
            operation,
            reason: super::certificate::first_reason(&e),
        }
    }
}

impl From<CipherError> for io::Error {
    fn from(e: CipherError) -> io::Error {
        io::Error::other(e)
    }
}

/// A fresh random key of `len` bytes.
pub fn random_bytes(len: usize) -> Result<Vec<u8>, CipherError> {
    let mut key = vec![0u8; len];
    openssl::rand::rand_bytes(&mut key).map_err(CipherError::openssl("random"))?;
    Ok(key)
}

/// OpenSSL 3 looks an algorithm up in its providers ("fetches" it) whenever a
/// context is initialized with one of the legacy static handles; per message,
/// those lookups cost about as much as encrypting a kilobyte. The algorithms are
/// therefore fetched once per process, and key-transport contexts are kept per
/// public key ([`KeyWrap`]).
fn fetched_cipher(algorithm: DataEncryption) -> &'static CipherRef {
    static FETCHED: [OnceLock<Option<Cipher>>; 5] = [const { OnceLock::new() }; 5];
    let (slot, name) = match algorithm {
        DataEncryption::Aes128Cbc => (0, "AES-128-CBC"),
        DataEncryption::Aes256Cbc => (1, "AES-256-CBC"),
        DataEncryption::Aes128Gcm => (2, "AES-128-GCM"),
        DataEncryption::Aes256Gcm => (3, "AES-256-GCM"),
        DataEncryption::TripleDesCbc => (4, "DES-EDE3-CBC"),
    };
    let fetched = FETCHED[slot].get_or_init(|| Cipher::fetch(None, name, None).ok());
    match fetched {
        Some(cipher) => cipher,
        // A provider without it: the legacy handle (fetched on every use).
        None => match algorithm {
            DataEncryption::Aes128Cbc => Cipher::aes_128_cbc(),
            DataEncryption::Aes256Cbc => Cipher::aes_256_cbc(),
            DataEncryption::Aes128Gcm => Cipher::aes_128_gcm(),
            DataEncryption::Aes256Gcm => Cipher::aes_256_gcm(),
            DataEncryption::TripleDesCbc => Cipher::des_ede3_cbc(),
        },
    }
}

/// The digest `digest` names, fetched once per process (see [`fetched_cipher`]).
fn fetched_md(digest: OaepDigest) -> &'static MdRef {
    static FETCHED: [OnceLock<Option<Md>>; 3] = [const { OnceLock::new() }; 3];
    let (slot, name) = match digest {
        OaepDigest::Sha1 => (0, "SHA1"),
        OaepDigest::Sha256 => (1, "SHA2-256"),
        OaepDigest::Sha512 => (2, "SHA2-512"),
    };
    match FETCHED[slot].get_or_init(|| Md::fetch(None, name, None).ok()) {
        Some(md) => md,
        None => match digest {
            OaepDigest::Sha1 => Md::sha1(),
            OaepDigest::Sha256 => Md::sha256(),
            OaepDigest::Sha512 => Md::sha512(),
        },
    }
}

/// Contexts kept for reuse per public key: enough for every core to have one in
/// use and one waiting; more are made when needed and dropped after.
const POOLED_CONTEXTS: usize = 16;

/// RSA key transport for one public key. Each key-transport setting gets a
/// context initialized once (padding and digests set) and reused for every
/// message; contexts are pooled because a context is used by one message at a
/// time.
pub struct KeyWrap {
    public_key: PKey<Public>,
    ready: Mutex<Vec<ReadyContext>>,
}

/// A context set up for one key-transport setting.
struct ReadyContext {
    transport: KeyTransport,
    digest: OaepDigest,
    ctx: PkeyCtx<Public>,
}

impl KeyWrap {
    pub fn new(public_key: PKey<Public>) -> KeyWrap {
        KeyWrap {
            public_key,
            ready: Mutex::new(Vec::new()),
        }
    }

    pub fn public_key(&self) -> &PKey<Public> {
        &self.public_key
    }

    /// Encrypt the content key for this public key.
    pub fn wrap(
        &self,
        transport: KeyTransport,
        digest: OaepDigest,
        content_key: &[u8],
    ) -> Result<Vec<u8>, CipherError> {
        let pooled = {
            let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
            ready
                .iter()
                .position(|r| r.transport == transport && r.digest == digest)
                .map(|i| ready.swap_remove(i))
        };
        let mut context = match pooled {
            Some(context) => context,
            None => ReadyContext::new(&self.public_key, transport, digest)?,
        };
        let op = CipherError::openssl("key transport");
        let mut out = vec![0u8; self.public_key.size()];
        let n = context
            .ctx
            .encrypt(content_key, Some(&mut out))
            .map_err(op)?;
        out.truncate(n);
        let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
        if ready.len() < POOLED_CONTEXTS {
            ready.push(context);
        }
        Ok(out)
    }
}

impl ReadyContext {
    fn new(
        public_key: &PKey<Public>,
        transport: KeyTransport,
        digest: OaepDigest,
    ) -> Result<ReadyContext, CipherError> {
        let op = || CipherError::openssl("key transport");
        let mut ctx = PkeyCtx::new(public_key).map_err(op())?;
        ctx.encrypt_init().map_err(op())?;
        match transport {
            KeyTransport::Rsa15 => ctx.set_rsa_padding(Padding::PKCS1).map_err(op())?,
            KeyTransport::RsaOaepMgf1p | KeyTransport::RsaOaep => {
                // rsa-oaep-mgf1p names MGF1 with SHA-1 whatever its DigestMethod
                // says; xmlenc11 rsa-oaep writes its MGF, and wssgate writes the
                // same hash.
                let mgf1 = if transport == KeyTransport::RsaOaep {
                    fetched_md(digest)
                } else {
                    fetched_md(OaepDigest::Sha1)
                };
                ctx.set_rsa_padding(Padding::PKCS1_OAEP).map_err(op())?;
                ctx.set_rsa_oaep_md(fetched_md(digest)).map_err(op())?;
                ctx.set_rsa_mgf1_md(mgf1).map_err(op())?;
            }
        }
        Ok(ReadyContext {
            transport,
            digest,
            ctx,
        })
    }
}

/// Parameters of RSA key transport as a received EncryptedKey names them.
#[derive(Clone, Copy)]
pub struct UnwrapParams<'a> {
    pub transport: KeyTransport,
    pub digest: MessageDigest,
    pub mgf1: MessageDigest,
    pub label: Option<&'a [u8]>,
}

/// Decrypt a wrapped content key with the receiver's private key.
pub fn unwrap_key(
    private_key: &PKey<Private>,
    params: UnwrapParams<'_>,
    wrapped: &[u8],
) -> Result<Vec<u8>, CipherError> {
    let op = || CipherError::openssl("key unwrap");
    let mut dec = Decrypter::new(private_key).map_err(op())?;
    match params.transport {
        KeyTransport::Rsa15 => dec.set_rsa_padding(Padding::PKCS1).map_err(op())?,
        KeyTransport::RsaOaepMgf1p | KeyTransport::RsaOaep => {
            dec.set_rsa_padding(Padding::PKCS1_OAEP).map_err(op())?;
            dec.set_rsa_oaep_md(params.digest).map_err(op())?;
            dec.set_rsa_mgf1_md(params.mgf1).map_err(op())?;
            if let Some(label) = params.label {
                dec.set_rsa_oaep_label(label).map_err(op())?;
            }
        }
    }
    let len = dec.decrypt_len(wrapped).map_err(op())?;
    let mut out = vec![0u8; len];
    let n = dec.decrypt(wrapped, &mut out).map_err(op())?;
    out.truncate(n);
    Ok(out)
}

/// How much plaintext is gathered before it goes through the cipher: large blocks
/// keep the per-call overhead of OpenSSL and base64 out of the profile.
const PLAINTEXT_BLOCK: usize = 48 * 1024;
/// Writes at least this long are encrypted without being copied into `pending`.
const DIRECT_WRITE: usize = 8 * 1024;
/// A stepped writer queues at most this much plaintext for its steps; beyond,
/// OpenSSL encrypts what waits.
const STEP_QUEUE: usize = 64 * 1024;
/// Ciphertext gathered before it is base64-encoded, when blocks come one by one.
const BASE64_RUN: usize = 12 * 1024;

#[cfg(test)]
thread_local! {
    /// Blocks this thread's stepped writers encrypted in steps.
    pub(crate) static STEPPED_BLOCKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A `Write` that encrypts what it is given and writes the base64 of
/// `IV ‖ ciphertext (‖ tag)` to `out`, without line breaks.
///
/// Memory is bounded by one plaintext block whatever the message size (and,
/// when stepped, [`STEP_QUEUE`] of plaintext waiting for the steps, in a buffer
/// at most twice that).
pub struct EncryptingWriter<W: Write> {
    out: W,
    /// AES-CBC encrypted a block per [`EncryptingWriter::step`] (see [`stepped`]).
    stepped: Option<Box<SteppedCbc>>,
    ctx: CipherCtx,
    algorithm: DataEncryption,
    /// Plaintext waiting to be encrypted in one large call.
    pending: Vec<u8>,
    /// Ciphertext not yet base64-encoded because it is not a multiple of three bytes.
    carry: Vec<u8>,
    /// Reused output buffers.
    cipher_buf: Vec<u8>,
    text_buf: Vec<u8>,
    plaintext_len: u64,
}

impl<W: Write> EncryptingWriter<W> {
    pub fn new(out: W, algorithm: DataEncryption, key: &[u8]) -> Result<Self, CipherError> {
        Self::with_iv(out, algorithm, key, random_bytes(algorithm.iv_len())?)
    }

    /// As [`EncryptingWriter::new`], with an IV the caller drew from the
    /// generator (with the message's other random values, in one call). The IV
    /// must be fresh: never used before with this key.
    pub fn with_iv(
        out: W,
        algorithm: DataEncryption,
        key: &[u8],
        iv: Vec<u8>,
    ) -> Result<Self, CipherError> {
        Self::build(out, algorithm, key, iv, PLAINTEXT_BLOCK)
    }

    /// A writer whose `pending` block starts with room for `pending` bytes.
    fn build(
        out: W,
        algorithm: DataEncryption,
        key: &[u8],
        iv: Vec<u8>,
        pending: usize,
    ) -> Result<Self, CipherError> {
        if iv.len() != algorithm.iv_len() {
            return Err(CipherError::OpenSsl {
                operation: "content encryption",
                reason: format!("an IV of {} bytes for {algorithm:?}", iv.len()),
            });
        }
        let op = || CipherError::openssl("content encryption");
        let mut ctx = CipherCtx::new().map_err(op())?;
        ctx.encrypt_init(Some(fetched_cipher(algorithm)), Some(key), Some(&iv))
            .map_err(op())?;
        // OpenSSL's PKCS#7 padding is a valid XML Encryption padding: the last byte
        // is the pad length (the others may be anything, here they equal it).
        Ok(EncryptingWriter {
            out,
            stepped: None,
            ctx,
            algorithm,
            pending: Vec::with_capacity(pending),
            carry: iv,
            cipher_buf: Vec::new(),
            text_buf: Vec::new(),
            plaintext_len: 0,
        })
    }

    /// As [`EncryptingWriter::with_iv`], for a caller that calls
    /// [`EncryptingWriter::step`] between pieces of work of its own. With AES-CBC,
    /// blocks are then encrypted one at a time, beside that work; the output is
    /// the same.
    pub fn stepped(
        out: W,
        algorithm: DataEncryption,
        key: &[u8],
        iv: Vec<u8>,
    ) -> Result<Self, CipherError> {
        let stepped = SteppedCbc::new(algorithm, key, &iv);
        let pending = if stepped.is_some() {
            0
        } else {
            PLAINTEXT_BLOCK
        };
        let mut writer = Self::build(out, algorithm, key, iv, pending)?;
        writer.stepped = stepped;
        Ok(writer)
    }

    /// Encrypt one waiting block, if a whole one waits (a stepped AES-CBC writer;
    /// otherwise nothing).
    #[inline]
    pub fn step(&mut self) -> io::Result<()> {
        let Some(block) = self.stepped.as_mut().and_then(|s| s.step()) else {
            return Ok(());
        };
        #[cfg(test)]
        STEPPED_BLOCKS.with(|n| n.set(n.get() + 1));
        self.carry.extend_from_slice(&block);
        if self.carry.len() >= BASE64_RUN {
            self.emit_base64(false)?;
        }
        Ok(())
    }

    /// A stepped writer's write: queued for the steps, unless the steps are
    /// behind or the write is large. Then OpenSSL encrypts what waits and the
    /// write's whole blocks (without copying them), and the rest is queued.
    fn write_stepped(&mut self, buf: &[u8]) -> io::Result<()> {
        let Some(stepped) = &mut self.stepped else {
            return Ok(());
        };
        let waiting = stepped.waiting().len();
        if buf.len() < DIRECT_WRITE && waiting + buf.len() <= STEP_QUEUE {
            stepped.queue(buf);
            return Ok(());
        }
        let top_up = ((BLOCK - waiting % BLOCK) % BLOCK).min(buf.len());
        stepped.queue(&buf[..top_up]);
        self.encrypt_waiting(false)?;
        let rest = &buf[top_up..];
        let whole = rest.len() / BLOCK * BLOCK;
        self.encrypt_chained(&rest[..whole], false)?;
        if let Some(stepped) = &mut self.stepped {
            stepped.queue(&rest[whole..]);
        }
        Ok(())
    }

    /// OpenSSL encrypts the waiting whole blocks of a stepped writer, or, at the
    /// end (`last`), all that waits.
    fn encrypt_waiting(&mut self, last: bool) -> io::Result<()> {
        let Some(stepped) = &mut self.stepped else {
            return Ok(());
        };
        // The waiting bytes are taken out for the call and put back, so that the
        // cipher context and the output buffers can be borrowed beside them.
        let waiting = stepped.take_waiting();
        let len = if last {
            waiting.len()
        } else {
            waiting.len() / BLOCK * BLOCK
        };
        let result = self.encrypt_chained(&waiting[..len], last);
        if let Some(stepped) = &mut self.stepped {
            stepped.put_back(waiting, len);
        }
        result
    }

    /// OpenSSL encrypts `plaintext` (whole blocks unless `last`) chained on from
    /// the stepped writer's last block, in pieces of at most [`PLAINTEXT_BLOCK`]
    /// so that the output buffers stay that small whatever the write.
    fn encrypt_chained(&mut self, plaintext: &[u8], last: bool) -> io::Result<()> {
        let Some(mut chain) = self.stepped.as_ref().map(|s| s.chain) else {
            return Ok(());
        };
        if plaintext.is_empty() && !last {
            return Ok(());
        }
        let op = CipherError::openssl("content encryption");
        self.ctx
            .encrypt_init(None, None, Some(&chain))
            .map_err(op)?;
        for piece in plaintext.chunks(PLAINTEXT_BLOCK) {
            self.cipher_buf.resize(piece.len() + BLOCK, 0);
            let n = self
                .ctx
                .cipher_update(piece, Some(&mut self.cipher_buf))
                .map_err(CipherError::openssl("content encryption"))?;
            if n >= BLOCK {
                chain.copy_from_slice(&self.cipher_buf[n - BLOCK..n]);
            }
            self.carry.extend_from_slice(&self.cipher_buf[..n]);
            self.emit_base64(false)?;
        }
        if let Some(stepped) = &mut self.stepped {
            stepped.chain = chain;
        }
        Ok(())
    }

    fn encrypt_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        let result = self.encrypt(&pending);
        self.pending = pending;
        self.pending.clear();
        result
    }

    fn encrypt(&mut self, plaintext: &[u8]) -> io::Result<()> {
        let block = self.ctx.block_size();
        self.cipher_buf.resize(plaintext.len() + block, 0);
        let n = self
            .ctx
            .cipher_update(plaintext, Some(&mut self.cipher_buf))
            .map_err(CipherError::openssl("content encryption"))?;
        self.carry.extend_from_slice(&self.cipher_buf[..n]);
        self.emit_base64(false)
    }

    /// Base64-encode the carried ciphertext: whole triples only unless `last`.
    fn emit_base64(&mut self, last: bool) -> io::Result<()> {
        let take = if last {
            self.carry.len()
        } else {
            self.carry.len() / 3 * 3
        };
        if take == 0 {
            return Ok(());
        }
        self.text_buf.resize(take.div_ceil(3) * 4, 0);
        let n = B64
            .encode_slice(&self.carry[..take], &mut self.text_buf)
            .map_err(|_| io::Error::other("base64 buffer too small"))?;
        self.out.write_all(&self.text_buf[..n])?;
        self.carry.drain(..take);
        Ok(())
    }

    /// Finish the cipher (padding, GCM tag) and return the inner writer.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        // What waits goes to OpenSSL, whose context pads the last block.
        self.encrypt_waiting(true)?;
        self.encrypt_pending()?;
        let block = self.ctx.block_size();
        self.cipher_buf.resize(block * 2, 0);
        let n = self
            .ctx
            .cipher_final(&mut self.cipher_buf)
            .map_err(CipherError::openssl("content encryption"))?;
        self.carry.extend_from_slice(&self.cipher_buf[..n]);
        if self.algorithm.is_gcm() {
            let mut tag = [0u8; GCM_TAG_LEN];
            self.ctx
                .tag(&mut tag)
                .map_err(CipherError::openssl("content encryption"))?;
            self.carry.extend_from_slice(&tag);
        }
        self.emit_base64(true)?;
        Ok((self.out, self.plaintext_len))
    }
}

impl<W: Write> Write for EncryptingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        self.plaintext_len += buf.len() as u64;
        if self.stepped.is_some() {
            return self.write_stepped(buf);
        }
        // Large writes go to the cipher as they are, without a copy, after
        // what was gathered before them.
        if buf.len() >= DIRECT_WRITE {
            self.encrypt_pending()?;
            while buf.len() >= DIRECT_WRITE {
                let take = buf.len().min(PLAINTEXT_BLOCK);
                self.encrypt(&buf[..take])?;
                buf = &buf[take..];
            }
        }
        while !buf.is_empty() {
            let room = PLAINTEXT_BLOCK - self.pending.len();
            let take = room.min(buf.len());
            self.pending.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.pending.len() == PLAINTEXT_BLOCK {
                self.encrypt_pending()?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decrypt `IV ‖ ciphertext (‖ tag)` as XML Encryption defines it for `algorithm`.
/// CBC padding is removed by its last byte only (the other pad bytes are arbitrary).
pub fn decrypt_data(
    algorithm: DataEncryption,
    key: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, CipherError> {
    if key.len() != algorithm.key_len() {
        return Err(CipherError::Malformed(
            "content key length does not fit the algorithm",
        ));
    }
    let iv_len = algorithm.iv_len();
    let tag_len = if algorithm.is_gcm() { GCM_TAG_LEN } else { 0 };
    if data.len() < iv_len + tag_len {
        return Err(CipherError::Malformed("shorter than IV and tag"));
    }
    let (iv, rest) = data.split_at(iv_len);
    let (body, tag) = rest.split_at(rest.len() - tag_len);
    let block = algorithm.cipher().block_size();
    if !algorithm.is_gcm() && (body.is_empty() || body.len() % block != 0) {
        return Err(CipherError::Malformed(
            "CBC ciphertext is not a whole number of blocks",
        ));
    }
    let op = || CipherError::openssl("content decryption");
    let mut c = Crypter::new(algorithm.cipher(), Mode::Decrypt, key, Some(iv)).map_err(op())?;
    c.pad(false);
    if algorithm.is_gcm() {
        c.set_tag(tag).map_err(op())?;
    }
    let mut out = vec![0u8; body.len() + block];
    let mut n = c.update(body, &mut out).map_err(op())?;
    n += c
        .finalize(&mut out[n..])
        .map_err(|_| CipherError::TagMismatch)?;
    out.truncate(n);
    if !algorithm.is_gcm() {
        let pad = *out
            .last()
            .ok_or(CipherError::Malformed("empty plaintext"))? as usize;
        if pad == 0 || pad > block || pad > out.len() {
            return Err(CipherError::Malformed("invalid padding"));
        }
        out.truncate(out.len() - pad);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encrypt_all(alg: DataEncryption, key: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut w = EncryptingWriter::new(Vec::new(), alg, key).unwrap();
        // Uneven pieces exercise the carry logic.
        for chunk in plain.chunks(7) {
            w.write_all(chunk).unwrap();
        }
        let (out, len) = w.finish().unwrap();
        assert_eq!(len, plain.len() as u64);
        B64.decode(out).unwrap()
    }

    #[test]
    fn every_algorithm_round_trips_at_awkward_sizes() {
        for alg in DataEncryption::ALL {
            let key = random_bytes(alg.key_len()).unwrap();
            for size in [
                0,
                1,
                15,
                16,
                17,
                100,
                PLAINTEXT_BLOCK - 1,
                PLAINTEXT_BLOCK + 5,
            ] {
                let plain: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                let data = encrypt_all(*alg, &key, &plain);
                assert_eq!(
                    decrypt_data(*alg, &key, &data).unwrap(),
                    plain,
                    "{alg} {size}"
                );
            }
        }
    }

    /// A stepped writer given `writes`, with `steps[i]` steps after the i-th.
    fn stepped_output(
        alg: DataEncryption,
        key: &[u8],
        iv: &[u8],
        writes: &[&[u8]],
        steps: &[usize],
    ) -> Vec<u8> {
        let mut w = EncryptingWriter::stepped(Vec::new(), alg, key, iv.to_vec()).unwrap();
        for (write, steps) in writes.iter().zip(steps) {
            w.write_all(write).unwrap();
            for _ in 0..*steps {
                w.step().unwrap();
            }
        }
        w.finish().unwrap().0
    }

    #[test]
    fn a_stepped_writer_writes_what_openssl_alone_writes() {
        // Whatever share of the blocks the steps encrypt, and wherever OpenSSL
        // takes over (large writes, a full queue, the end), the output is the
        // same bytes as OpenSSL's alone for the same key and IV.
        let plain: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |bound: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % bound as u64) as usize
        };
        for alg in DataEncryption::ALL {
            let key = random_bytes(alg.key_len()).unwrap();
            let iv = random_bytes(alg.iv_len()).unwrap();
            for schedule in 0..24 {
                // Write sizes from a byte to past the step queue; as many steps
                // as there are blocks, some, or none.
                let mut writes = Vec::new();
                let mut steps = Vec::new();
                let mut at = 0;
                let end = [0, 1, 15, 16, 17, 5000, 70_000, plain.len()][schedule % 8];
                while at < end {
                    let size = match next(10) {
                        0 => 1 + next(15),
                        1..=6 => 1 + next(3000),
                        7 => DIRECT_WRITE + next(4000),
                        8 => STEP_QUEUE + next(20_000),
                        _ => 16 * (1 + next(8)),
                    };
                    let size = size.min(end - at);
                    writes.push(&plain[at..at + size]);
                    steps.push(match schedule % 3 {
                        0 => size / 16 + 1,
                        1 => next(200),
                        _ => 0,
                    });
                    at += size;
                }
                let mut alone =
                    EncryptingWriter::with_iv(Vec::new(), *alg, &key, iv.clone()).unwrap();
                alone.write_all(&plain[..end]).unwrap();
                let alone = alone.finish().unwrap().0;
                let stepped = stepped_output(*alg, &key, &iv, &writes, &steps);
                assert!(stepped == alone, "{alg}, schedule {schedule}, {end} bytes");
                let data = B64.decode(&stepped).unwrap();
                assert_eq!(decrypt_data(*alg, &key, &data).unwrap(), &plain[..end]);
            }
        }
    }

    #[test]
    fn the_step_queue_is_bounded_however_far_the_steps_fall_behind() {
        // Writes below the direct size, with no steps, a few, or one per block:
        // at most STEP_QUEUE waits, in a buffer at most twice that.
        let key = random_bytes(32).unwrap();
        for steps_per_write in [0, 3, 1000] {
            let iv = random_bytes(16).unwrap();
            let mut w =
                EncryptingWriter::stepped(Vec::new(), DataEncryption::Aes256Cbc, &key, iv).unwrap();
            for i in 0..2000 {
                w.write_all(&vec![b'a'; 1 + i * 37 % (DIRECT_WRITE - 1)])
                    .unwrap();
                for _ in 0..steps_per_write {
                    w.step().unwrap();
                }
                let stepped = w.stepped.as_ref().unwrap();
                assert!(stepped.waiting().len() <= STEP_QUEUE, "write {i}");
                assert!(
                    stepped.room() <= 2 * STEP_QUEUE,
                    "write {i}: {}",
                    stepped.room()
                );
            }
            w.finish().unwrap();
        }
    }

    #[test]
    fn a_large_write_to_a_stepped_writer_keeps_its_buffers_small() {
        // A single large token (a comment, CDATA) arrives as one write: OpenSSL
        // takes it in pieces, so no buffer grows with it.
        let key = random_bytes(32).unwrap();
        let iv = random_bytes(16).unwrap();
        let mut w =
            EncryptingWriter::stepped(Vec::new(), DataEncryption::Aes256Cbc, &key, iv).unwrap();
        w.write_all(b"<a>").unwrap();
        w.write_all(&vec![b'x'; 4 << 20]).unwrap();
        let bound = PLAINTEXT_BLOCK * 4 / 3 + 64;
        for (name, capacity) in [
            ("cipher_buf", w.cipher_buf.capacity()),
            ("carry", w.carry.capacity()),
            ("text_buf", w.text_buf.capacity()),
            ("pending", w.pending.capacity()),
        ] {
            assert!(capacity <= bound, "{name}: {capacity}");
        }
        let out = w.finish().unwrap().0;
        let ciphertext: usize = 16 + (3 + (4 << 20)) / 16 * 16 + 16;
        assert_eq!(out.len(), ciphertext.div_ceil(3) * 4);
    }

    #[test]
    fn an_iv_of_the_wrong_length_is_refused() {
        let key = [7u8; 32];
        let refused =
            EncryptingWriter::with_iv(Vec::new(), DataEncryption::Aes256Cbc, &key, vec![0; 12]);
        assert!(refused.is_err());
    }

    #[test]
    fn gcm_detects_tampering() {
        let alg = DataEncryption::Aes128Gcm;
        let key = random_bytes(16).unwrap();
        let mut data = encrypt_all(alg, &key, b"hello world");
        data[14] ^= 1;
        assert!(matches!(
            decrypt_data(alg, &key, &data),
            Err(CipherError::TagMismatch)
        ));
    }

    #[test]
    fn arbitrary_xmlenc_padding_is_accepted() {
        // Pad bytes other than the last are arbitrary in XML Encryption.
        let alg = DataEncryption::Aes128Cbc;
        let key = random_bytes(16).unwrap();
        let iv = random_bytes(16).unwrap();
        let mut block = b"abcdefghij".to_vec();
        block.extend_from_slice(&[0xAA, 0xBB, 0xCC, 0xDD, 0xEE, 6]);
        let mut c = Crypter::new(alg.cipher(), Mode::Encrypt, &key, Some(&iv)).unwrap();
        c.pad(false);
        let mut out = vec![0u8; 32];
        let n = c.update(&block, &mut out).unwrap();
        let mut data = iv.clone();
        data.extend_from_slice(&out[..n]);
        assert_eq!(decrypt_data(alg, &key, &data).unwrap(), b"abcdefghij");
    }
}
