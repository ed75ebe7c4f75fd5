//! The buffered signing of a `sign = true` route's request: the Security header
//! precedes the Body and the Signature depends on the Body's digest, so the
//! whole request (at most `sign_max_body`) is read, then signed — and encrypted
//! for the route's certificate in the plan's order — on the async worker when
//! small, on the blocking pool under the `encryptions` permits when large.
//!
//! The key and the certificate come from the request's one snapshot; which
//! fault a failure is, is [`super::fault`]'s.

use std::sync::Arc;

use bytes::Bytes;

use super::Proxy;
use super::fault::Fault;
use crate::keyring::Ring;
use crate::wss::sign::{SignError, SignPlan, SignedMessage, SigningKey, sign_to_vec};
use crate::wss::{EncryptOptions, Recipient};

/// Messages up to this size are signed on the async worker, as buffered
/// encryption does; larger ones on the blocking pool.
const INLINE_SIGN_LIMIT: usize = 64 * 1024;

/// What one signing needs, all of it from the request's snapshot.
pub(super) struct Signer {
    pub(super) key: Arc<SigningKey>,
    pub(super) plan: SignPlan,
    pub(super) recipient: Arc<Recipient>,
    pub(super) options: EncryptOptions,
    /// The ring whose active key is `key`: a signature is counted there.
    pub(super) ring: Option<Arc<Ring>>,
}

impl Signer {
    fn sign(&self, input: &[u8]) -> Result<SignedMessage, SignError> {
        let signed = sign_to_vec(
            input,
            &self.key,
            &self.plan,
            Some(&self.recipient),
            &self.options,
        )?;
        if let Some(ring) = &self.ring {
            ring.record_signature(std::time::SystemTime::now());
        }
        Ok(signed)
    }
}

/// Sign (and encrypt) a whole request body.
pub(super) async fn sign_buffered(
    proxy: &Proxy,
    signer: Signer,
    input: Bytes,
) -> Result<SignedMessage, Fault> {
    if input.len() <= INLINE_SIGN_LIMIT {
        return signer.sign(&input).map_err(|e| Fault::from_sign(&e));
    }
    let permit = proxy.encryptions.clone().acquire_owned().await;
    match tokio::task::spawn_blocking(move || {
        let _permit = permit;
        signer.sign(&input)
    })
    .await
    {
        Ok(result) => result.map_err(|e| Fault::from_sign(&e)),
        // The task died: nothing was sent; wssgate's fault, not the caller's.
        Err(join) => Err(Fault::Internal(format!("signing task failed: {join}"))),
    }
}
