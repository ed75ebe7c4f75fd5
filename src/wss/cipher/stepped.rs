//! AES-CBC one block at a time, for a caller with work of its own between blocks.
//!
//! CBC encryption is one dependent chain: each block's rounds wait for the block
//! before, and while they run most of the core idles. The Body scanner's work is
//! independent of the cipher, so one queued block encrypted after each token it
//! scans lets the processor run both at once: the scan then costs little more
//! than the cipher alone (docs/PERFORMANCE.md, "The scan beside the cipher").
//!
//! OpenSSL's own loop is faster per block when nothing runs beside it. It takes
//! what the scan does not get to (large writes, and whatever waits at the end),
//! chained on from the last block encrypted here; the ciphertext is the same
//! whichever of the two encrypted a block.

use aes::cipher::consts::U16;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockBackend, BlockClosure, BlockEncrypt, BlockSizeUser, KeyInit};

use crate::wss::algorithms::DataEncryption;

pub(super) const BLOCK: usize = 16;

// One per message, inside a boxed `SteppedCbc`: boxing the larger key schedule
// would cost an indirection per block.
#[allow(clippy::large_enum_variant)]
enum Aes {
    Aes128(aes::Aes128Enc),
    Aes256(aes::Aes256Enc),
}

pub(super) struct SteppedCbc {
    aes: Aes,
    /// The last ciphertext block (the IV before the first).
    pub(super) chain: [u8; BLOCK],
    /// Plaintext accepted; `queued[done..]` is not encrypted yet.
    queued: Vec<u8>,
    done: usize,
}

impl SteppedCbc {
    /// For AES-CBC only: other algorithms are not a chain of blocks (GCM) or
    /// not worth a second implementation (3DES).
    pub(super) fn new(algorithm: DataEncryption, key: &[u8], iv: &[u8]) -> Option<Box<SteppedCbc>> {
        let aes = match algorithm {
            DataEncryption::Aes128Cbc => Aes::Aes128(aes::Aes128Enc::new_from_slice(key).ok()?),
            DataEncryption::Aes256Cbc => Aes::Aes256(aes::Aes256Enc::new_from_slice(key).ok()?),
            _ => return None,
        };
        Some(Box::new(SteppedCbc {
            aes,
            chain: iv.try_into().ok()?,
            queued: Vec::new(),
            done: 0,
        }))
    }

    /// Plaintext accepted and not encrypted yet.
    pub(super) fn waiting(&self) -> &[u8] {
        &self.queued[self.done..]
    }

    /// Bytes the queue's buffer holds room for.
    #[cfg(test)]
    pub(super) fn room(&self) -> usize {
        self.queued.capacity()
    }

    /// Queue `bytes`. What is encrypted already makes room first, so the queue
    /// holds no more than what waits.
    pub(super) fn queue(&mut self, bytes: &[u8]) {
        if self.done == self.queued.len() {
            self.queued.clear();
            self.done = 0;
        } else if self.done > 0 && self.queued.len() + bytes.len() > self.queued.capacity() {
            self.queued.drain(..self.done);
            self.done = 0;
        }
        self.queued.extend_from_slice(bytes);
    }

    /// The waiting bytes, taken out of the queue (see [`SteppedCbc::put_back`]).
    pub(super) fn take_waiting(&mut self) -> Vec<u8> {
        let mut waiting = std::mem::take(&mut self.queued);
        waiting.drain(..self.done);
        self.done = 0;
        waiting
    }

    /// The bytes [`SteppedCbc::take_waiting`] gave, of which the first
    /// `encrypted` were encrypted elsewhere (and `chain` set from their last block).
    pub(super) fn put_back(&mut self, waiting: Vec<u8>, encrypted: usize) {
        self.queued = waiting;
        self.done = encrypted;
    }

    /// Encrypt the next waiting block, if a whole one waits.
    #[inline]
    pub(super) fn step(&mut self) -> Option<[u8; BLOCK]> {
        let plain = self.queued.get(self.done..)?.first_chunk::<BLOCK>()?;
        let link = Link {
            chain: &mut self.chain,
            plain,
        };
        match &self.aes {
            Aes::Aes128(aes) => aes.encrypt_with_backend(link),
            Aes::Aes256(aes) => aes.encrypt_with_backend(link),
        }
        self.done += BLOCK;
        Some(self.chain)
    }
}

/// One link of the chain: `chain = E(chain ⊕ plain)`, run inside the cipher's
/// backend. The AES-NI backend (chosen at run time when the processor has it)
/// is compiled with AES-NI enabled and this closure inlined into it, so the
/// block stays in a register from the XOR through the rounds; only the chain
/// is stored between steps.
struct Link<'a> {
    chain: &'a mut [u8; BLOCK],
    plain: &'a [u8; BLOCK],
}

impl BlockSizeUser for Link<'_> {
    type BlockSize = U16;
}

impl BlockClosure for Link<'_> {
    #[inline(always)]
    fn call<B: BlockBackend<BlockSize = U16>>(self, backend: &mut B) {
        let mut block = GenericArray::from(*self.chain);
        for (b, p) in block.iter_mut().zip(self.plain) {
            *b ^= p;
        }
        backend.proc_block((&mut block).into());
        *self.chain = block.into();
    }
}
