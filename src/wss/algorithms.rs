//! The algorithm vocabulary of XML Encryption and WS-Security as wssgate speaks it:
//! key identifiers, the issuer name form, data encryption, key transport, OAEP
//! digests and the named profiles that bundle them. Each name maps to exactly one URI, in one place, so
//! the encryptor, the decryptor and the configuration cannot disagree.
//!
//! It owns names and URIs only; how the algorithms run lives in `cipher`.

use std::fmt;
use std::str::FromStr;

/// Namespace URIs used on the wire.
pub mod ns {
    pub const SOAP11: &str = "http://schemas.xmlsoap.org/soap/envelope/";
    pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
    pub const WSSE: &str =
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
    pub const WSSE11: &str = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd";
    pub const WSU: &str =
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
    pub const XENC: &str = "http://www.w3.org/2001/04/xmlenc#";
    pub const XENC11: &str = "http://www.w3.org/2009/xmlenc11#";
    pub const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
    pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
    pub const SOAP12_ULTIMATE_RECEIVER: &str =
        "http://www.w3.org/2003/05/soap-envelope/role/ultimateReceiver";
}

/// URIs of WS-Security token types and encodings.
pub mod uri {
    pub const BASE64_BINARY: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";
    pub const X509V3: &str =
        "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3";
    pub const X509_SKI: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509SubjectKeyIdentifier";
    pub const THUMBPRINT_SHA1: &str =
        "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1#ThumbprintSHA1";
    pub const ENCRYPTED_KEY_TOKEN: &str =
        "http://docs.oasis-open.org/wss/oasis-wss-soap-message-security-1.1#EncryptedKey";
    pub const TYPE_CONTENT: &str = "http://www.w3.org/2001/04/xmlenc#Content";
    pub const TYPE_ELEMENT: &str = "http://www.w3.org/2001/04/xmlenc#Element";
}

/// An algorithm name that wssgate does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?} (expected one of: {expected})")]
pub struct UnknownName {
    pub kind: &'static str,
    pub name: String,
    pub expected: &'static str,
}

macro_rules! named_enum {
    ($(#[$m:meta])* $ty:ident, $kind:literal, { $($(#[$vm:meta])* $variant:ident = $name:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $ty { $($(#[$vm])* $variant),+ }

        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            /// The name used in configuration and on the command line.
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(UnknownName {
                        kind: $kind,
                        name: s.to_string(),
                        expected: concat!($($name, " "),+),
                    }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

named_enum!(
    /// How the EncryptedKey names the receiver's certificate.
    KeyIdentifier, "key identifier", {
        /// `ds:X509IssuerSerial`: RFC 2253 issuer and decimal serial.
        IssuerSerial = "issuer-serial",
        /// A BinarySecurityToken carrying the certificate, and a direct reference to it.
        Bst = "bst",
        /// The raw SubjectKeyIdentifier extension bytes.
        Ski = "ski",
        /// Base64 SHA-1 of the certificate's DER encoding.
        Thumbprint = "thumbprint",
    }
);

named_enum!(
    /// How `issuer-serial` writes the issuer's distinguished name.
    IssuerNameFormat, "issuer name format", {
        /// RFC 2253: `CN=a,O=Example\, Inc.,C=DE` (Java's `X500Principal`, WSS4J, libxmlsec1).
        Rfc2253 = "rfc2253",
        /// What .NET's `X500DistinguishedName.Name` prints and WCF matches:
        /// `CN=a, O="Example, Inc.", C=DE` (", " between RDNs, special values quoted).
        Wcf = "wcf",
    }
);

named_enum!(
    /// The symmetric cipher that encrypts the Body content.
    DataEncryption, "data encryption", {
        Aes128Cbc = "aes128-cbc",
        Aes256Cbc = "aes256-cbc",
        Aes128Gcm = "aes128-gcm",
        Aes256Gcm = "aes256-gcm",
        /// Legacy receivers only.
        TripleDesCbc = "tripledes-cbc",
    }
);

named_enum!(
    /// How the content key is encrypted for the receiver's RSA key.
    KeyTransport, "key transport", {
        /// RSA-OAEP with SHA-1 and MGF1-SHA-1 (XML Encryption 1.0).
        RsaOaepMgf1p = "rsa-oaep-mgf1p",
        /// RSA-OAEP of XML Encryption 1.1, digest and MGF written explicitly.
        RsaOaep = "rsa-oaep",
        /// PKCS#1 v1.5: only with `allow_legacy`.
        Rsa15 = "rsa-1_5",
    }
);

named_enum!(
    /// The digest of RSA-OAEP. With xmlenc11 `rsa-oaep` MGF1 uses the same hash; with
    /// `rsa-oaep-mgf1p` MGF1 stays SHA-1 and a digest other than SHA-1 is written as
    /// its DigestMethod.
    OaepDigest, "OAEP digest", {
        Sha1 = "sha1",
        Sha256 = "sha256",
        Sha512 = "sha512",
    }
);

named_enum!(
    /// A named suite of common receivers.
    Profile, "profile", {
        Default = "default",
        /// WS-SecurityPolicy `Basic256`: what a CXF/WSS4J policy receiver accepts.
        Basic256 = "basic256",
        /// WS-SecurityPolicy `Basic256Sha256` (its SHA-256 is the signature digest;
        /// encryption is the same as `Basic256`).
        Basic256Sha256 = "basic256sha256",
        /// WS-SecurityPolicy `Basic128`.
        Basic128 = "basic128",
        WcfBasic256 = "wcf-basic256",
        WcfBasic128 = "wcf-basic128",
        /// What WCF's `Basic256` suite signs and encrypts with (MutualCertificate,
        /// `SignBeforeEncrypt`): thumbprints, RSA-SHA1 and SHA-1 digests.
        WcfBasic256Sign = "wcf-basic256-sign",
        /// XML Encryption 1.1 (`rsa-oaep` + GCM): refused by every standard
        /// WS-SecurityPolicy suite and by WSS4J before 2.1.3.
        Modern = "modern",
    }
);

named_enum!(
    /// The signature method of `ds:SignedInfo`.
    SignatureAlgorithm, "signature algorithm", {
        RsaSha256 = "rsa-sha256",
        /// Legacy receivers (WCF `Basic256`, WS-SecurityPolicy suites without `Sha256`).
        RsaSha1 = "rsa-sha1",
        RsaSha512 = "rsa-sha512",
    }
);

named_enum!(
    /// The digest of each `ds:Reference`.
    DigestAlgorithm, "digest algorithm", {
        Sha256 = "sha256",
        Sha1 = "sha1",
        Sha512 = "sha512",
    }
);

named_enum!(
    /// Whether the Body is signed as plaintext and then encrypted, or encrypted
    /// and then signed as its EncryptedData.
    SignOrder, "order", {
        SignThenEncrypt = "sign-then-encrypt",
        EncryptThenSign = "encrypt-then-sign",
    }
);

impl SignatureAlgorithm {
    pub fn uri(self) -> &'static str {
        match self {
            SignatureAlgorithm::RsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            SignatureAlgorithm::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            SignatureAlgorithm::RsaSha512 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
        }
    }

    pub fn from_uri(uri: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.uri() == uri)
    }

    pub(crate) fn md(self) -> openssl::hash::MessageDigest {
        use openssl::hash::MessageDigest;
        match self {
            SignatureAlgorithm::RsaSha256 => MessageDigest::sha256(),
            SignatureAlgorithm::RsaSha1 => MessageDigest::sha1(),
            SignatureAlgorithm::RsaSha512 => MessageDigest::sha512(),
        }
    }
}

impl DigestAlgorithm {
    pub fn uri(self) -> &'static str {
        match self {
            DigestAlgorithm::Sha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
            DigestAlgorithm::Sha1 => "http://www.w3.org/2000/09/xmldsig#sha1",
            DigestAlgorithm::Sha512 => "http://www.w3.org/2001/04/xmlenc#sha512",
        }
    }

    pub fn from_uri(uri: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.uri() == uri)
    }

    pub(crate) fn md(self) -> openssl::hash::MessageDigest {
        use openssl::hash::MessageDigest;
        match self {
            DigestAlgorithm::Sha256 => MessageDigest::sha256(),
            DigestAlgorithm::Sha1 => MessageDigest::sha1(),
            DigestAlgorithm::Sha512 => MessageDigest::sha512(),
        }
    }
}

/// What a policy-suite profile sets for signing, beside its encryption
/// [`Algorithms`]: the algorithms, how the signing certificate is named, and
/// whether a Timestamp is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningDefaults {
    pub signature_algorithm: SignatureAlgorithm,
    pub digest_algorithm: DigestAlgorithm,
    pub key_identifier: KeyIdentifier,
    pub issuer_name_format: IssuerNameFormat,
    pub timestamp: bool,
    pub order: SignOrder,
    pub encrypt_signature: bool,
}

impl Default for SigningDefaults {
    /// DESIGN.md's defaults: RSA-SHA256, SHA-256, a BinarySecurityToken, a
    /// Timestamp, sign-then-encrypt, the signature not encrypted.
    fn default() -> Self {
        SigningDefaults {
            signature_algorithm: SignatureAlgorithm::RsaSha256,
            digest_algorithm: DigestAlgorithm::Sha256,
            key_identifier: KeyIdentifier::Bst,
            issuer_name_format: IssuerNameFormat::Rfc2253,
            timestamp: true,
            order: SignOrder::SignThenEncrypt,
            encrypt_signature: false,
        }
    }
}

impl Profile {
    /// The signing half of a policy-suite profile; `None` for the profiles that
    /// only name an encryption suite (signing, when asked for, uses the defaults).
    pub fn signing(self) -> Option<SigningDefaults> {
        match self {
            // WS-SecurityPolicy Basic256Sha256 with an AsymmetricBinding as CXF
            // and WCF configure it: the InitiatorToken is included
            // (AlwaysToRecipient), so the signing certificate travels as a
            // BinarySecurityToken; the RecipientToken, never included, is named
            // by issuer and serial (the encryption half of the profile).
            Profile::Basic256Sha256 => Some(SigningDefaults::default()),
            Profile::WcfBasic256Sign => Some(SigningDefaults {
                signature_algorithm: SignatureAlgorithm::RsaSha1,
                digest_algorithm: DigestAlgorithm::Sha1,
                key_identifier: KeyIdentifier::Thumbprint,
                issuer_name_format: IssuerNameFormat::Wcf,
                ..SigningDefaults::default()
            }),
            _ => None,
        }
    }
}

impl DataEncryption {
    pub fn uri(self) -> &'static str {
        match self {
            DataEncryption::Aes128Cbc => "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
            DataEncryption::Aes256Cbc => "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
            DataEncryption::Aes128Gcm => "http://www.w3.org/2009/xmlenc11#aes128-gcm",
            DataEncryption::Aes256Gcm => "http://www.w3.org/2009/xmlenc11#aes256-gcm",
            DataEncryption::TripleDesCbc => "http://www.w3.org/2001/04/xmlenc#tripledes-cbc",
        }
    }

    pub fn from_uri(uri: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.uri() == uri)
    }

    /// Length of the content key in bytes.
    pub fn key_len(self) -> usize {
        match self {
            DataEncryption::Aes128Cbc | DataEncryption::Aes128Gcm => 16,
            DataEncryption::Aes256Cbc | DataEncryption::Aes256Gcm => 32,
            DataEncryption::TripleDesCbc => 24,
        }
    }

    /// Length of the IV written in front of the ciphertext.
    pub fn iv_len(self) -> usize {
        match self {
            DataEncryption::Aes128Cbc | DataEncryption::Aes256Cbc => 16,
            DataEncryption::Aes128Gcm | DataEncryption::Aes256Gcm => 12,
            DataEncryption::TripleDesCbc => 8,
        }
    }

    pub fn is_gcm(self) -> bool {
        matches!(self, DataEncryption::Aes128Gcm | DataEncryption::Aes256Gcm)
    }

    pub(crate) fn cipher(self) -> openssl::symm::Cipher {
        use openssl::symm::Cipher;
        match self {
            DataEncryption::Aes128Cbc => Cipher::aes_128_cbc(),
            DataEncryption::Aes256Cbc => Cipher::aes_256_cbc(),
            DataEncryption::Aes128Gcm => Cipher::aes_128_gcm(),
            DataEncryption::Aes256Gcm => Cipher::aes_256_gcm(),
            DataEncryption::TripleDesCbc => Cipher::des_ede3_cbc(),
        }
    }
}

/// GCM authentication tag length written after the ciphertext.
pub const GCM_TAG_LEN: usize = 16;

impl KeyTransport {
    pub fn uri(self) -> &'static str {
        match self {
            KeyTransport::RsaOaepMgf1p => "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
            KeyTransport::RsaOaep => "http://www.w3.org/2009/xmlenc11#rsa-oaep",
            KeyTransport::Rsa15 => "http://www.w3.org/2001/04/xmlenc#rsa-1_5",
        }
    }

    pub fn from_uri(uri: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.uri() == uri)
    }
}

impl OaepDigest {
    /// The DigestMethod URI.
    pub fn uri(self) -> &'static str {
        match self {
            OaepDigest::Sha1 => "http://www.w3.org/2000/09/xmldsig#sha1",
            OaepDigest::Sha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
            OaepDigest::Sha512 => "http://www.w3.org/2001/04/xmlenc#sha512",
        }
    }

    /// The xmlenc11 MGF URI for MGF1 with this digest.
    pub fn mgf_uri(self) -> &'static str {
        match self {
            OaepDigest::Sha1 => "http://www.w3.org/2009/xmlenc11#mgf1sha1",
            OaepDigest::Sha256 => "http://www.w3.org/2009/xmlenc11#mgf1sha256",
            OaepDigest::Sha512 => "http://www.w3.org/2009/xmlenc11#mgf1sha512",
        }
    }
}

/// Digest algorithms a received message may name (more than wssgate writes).
pub(crate) fn digest_from_uri(uri: &str) -> Option<openssl::hash::MessageDigest> {
    use openssl::hash::MessageDigest;
    Some(match uri {
        "http://www.w3.org/2000/09/xmldsig#sha1" => MessageDigest::sha1(),
        "http://www.w3.org/2001/04/xmldsig-more#sha224" => MessageDigest::sha224(),
        "http://www.w3.org/2001/04/xmlenc#sha256" => MessageDigest::sha256(),
        "http://www.w3.org/2001/04/xmldsig-more#sha384" => MessageDigest::sha384(),
        "http://www.w3.org/2001/04/xmlenc#sha512" => MessageDigest::sha512(),
        _ => return None,
    })
}

/// MGF URIs a received message may name.
pub(crate) fn mgf_from_uri(uri: &str) -> Option<openssl::hash::MessageDigest> {
    use openssl::hash::MessageDigest;
    Some(match uri {
        "http://www.w3.org/2009/xmlenc11#mgf1sha1" => MessageDigest::sha1(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha224" => MessageDigest::sha224(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha256" => MessageDigest::sha256(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha384" => MessageDigest::sha384(),
        "http://www.w3.org/2009/xmlenc11#mgf1sha512" => MessageDigest::sha512(),
        _ => return None,
    })
}

/// The complete algorithm choice for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Algorithms {
    pub key_identifier: KeyIdentifier,
    /// How the issuer is written when `key_identifier` is `issuer-serial`.
    pub issuer_name_format: IssuerNameFormat,
    pub data_encryption: DataEncryption,
    pub key_transport: KeyTransport,
    /// The OAEP digest: `rsa-oaep` uses it for MGF1 too; `rsa-oaep-mgf1p` keeps
    /// MGF1-SHA-1 whatever it is; `rsa-1_5` has none (always SHA-1 here).
    pub oaep_digest: OaepDigest,
}

impl Default for Algorithms {
    /// The `default` profile.
    fn default() -> Self {
        Profile::Default.algorithms()
    }
}

impl Profile {
    pub fn algorithms(self) -> Algorithms {
        use DataEncryption::{Aes128Cbc, Aes256Cbc, Aes256Gcm};
        use KeyIdentifier::{IssuerSerial, Thumbprint};
        use KeyTransport::{RsaOaep, RsaOaepMgf1p};
        let (key_identifier, issuer_name_format, key_transport, data_encryption, oaep_digest) =
            match self {
                Profile::Default | Profile::Basic256 | Profile::Basic256Sha256 => (
                    IssuerSerial,
                    IssuerNameFormat::Rfc2253,
                    RsaOaepMgf1p,
                    Aes256Cbc,
                    OaepDigest::Sha1,
                ),
                Profile::Basic128 => (
                    IssuerSerial,
                    IssuerNameFormat::Rfc2253,
                    RsaOaepMgf1p,
                    Aes128Cbc,
                    OaepDigest::Sha1,
                ),
                // WCF matches a thumbprint reliably; should a route choose
                // issuer-serial instead, the issuer is written the way WCF reads it.
                Profile::WcfBasic256 | Profile::WcfBasic256Sign => (
                    Thumbprint,
                    IssuerNameFormat::Wcf,
                    RsaOaepMgf1p,
                    Aes256Cbc,
                    OaepDigest::Sha1,
                ),
                Profile::WcfBasic128 => (
                    Thumbprint,
                    IssuerNameFormat::Wcf,
                    RsaOaepMgf1p,
                    Aes128Cbc,
                    OaepDigest::Sha1,
                ),
                Profile::Modern => (
                    IssuerSerial,
                    IssuerNameFormat::Rfc2253,
                    RsaOaep,
                    Aes256Gcm,
                    OaepDigest::Sha256,
                ),
            };
        Algorithms {
            key_identifier,
            issuer_name_format,
            data_encryption,
            key_transport,
            oaep_digest,
        }
    }
}

/// Explicit choices that override a profile, field by field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlgorithmOverrides {
    pub key_identifier: Option<KeyIdentifier>,
    pub issuer_name_format: Option<IssuerNameFormat>,
    pub data_encryption: Option<DataEncryption>,
    pub key_transport: Option<KeyTransport>,
    pub oaep_digest: Option<OaepDigest>,
}

/// The algorithm choice is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlgorithmError {
    #[error("key transport rsa-1_5 is refused unless allow_legacy = true")]
    LegacyNotAllowed,
    #[error("key transport rsa-1_5 takes no OAEP digest ({0} was given)")]
    Rsa15Digest(OaepDigest),
}

impl Algorithms {
    /// The profile's suite with the explicit choices applied. A key transport
    /// chosen explicitly brings its own default digest (SHA-256 for `rsa-oaep`,
    /// SHA-1 otherwise) unless a digest is chosen too.
    pub fn resolve(
        profile: Profile,
        overrides: AlgorithmOverrides,
        allow_legacy: bool,
    ) -> Result<Algorithms, AlgorithmError> {
        let mut algs = profile.algorithms();
        if let Some(k) = overrides.key_identifier {
            algs.key_identifier = k;
        }
        if let Some(f) = overrides.issuer_name_format {
            algs.issuer_name_format = f;
        }
        if let Some(d) = overrides.data_encryption {
            algs.data_encryption = d;
        }
        if let Some(t) = overrides.key_transport {
            if t != algs.key_transport {
                algs.oaep_digest = match t {
                    KeyTransport::RsaOaep => OaepDigest::Sha256,
                    KeyTransport::RsaOaepMgf1p | KeyTransport::Rsa15 => OaepDigest::Sha1,
                };
            }
            algs.key_transport = t;
        }
        if let Some(d) = overrides.oaep_digest {
            if algs.key_transport == KeyTransport::Rsa15 && d != OaepDigest::Sha1 {
                return Err(AlgorithmError::Rsa15Digest(d));
            }
            algs.oaep_digest = d;
        }
        if algs.key_transport == KeyTransport::Rsa15 && !allow_legacy {
            return Err(AlgorithmError::LegacyNotAllowed);
        }
        Ok(algs)
    }
}

impl fmt::Display for Algorithms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.key_identifier)?;
        if self.key_identifier == KeyIdentifier::IssuerSerial
            && self.issuer_name_format != IssuerNameFormat::Rfc2253
        {
            write!(f, "({})", self.issuer_name_format)?;
        }
        write!(f, " + {}", self.data_encryption)?;
        match (self.key_transport, self.oaep_digest) {
            (KeyTransport::RsaOaep, d) => write!(f, " + rsa-oaep({d})"),
            (KeyTransport::RsaOaepMgf1p, d) if d != OaepDigest::Sha1 => {
                write!(f, " + rsa-oaep-mgf1p({d})")
            }
            (t, _) => write!(f, " + {t}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for d in DataEncryption::ALL {
            assert_eq!(d.name().parse::<DataEncryption>().unwrap(), *d);
            assert_eq!(DataEncryption::from_uri(d.uri()), Some(*d));
        }
        for t in KeyTransport::ALL {
            assert_eq!(KeyTransport::from_uri(t.uri()), Some(*t));
        }
        let err = "aes-512".parse::<DataEncryption>().unwrap_err();
        assert!(err.to_string().contains("aes256-gcm"), "{err}");
    }

    #[test]
    fn profiles_match_the_design() {
        let m = Profile::Modern.algorithms();
        assert_eq!(m.key_transport, KeyTransport::RsaOaep);
        assert_eq!(m.oaep_digest, OaepDigest::Sha256);
        assert_eq!(m.data_encryption, DataEncryption::Aes256Gcm);
        let w = Profile::WcfBasic128.algorithms();
        assert_eq!(w.key_identifier, KeyIdentifier::Thumbprint);
        assert_eq!(w.data_encryption, DataEncryption::Aes128Cbc);
    }

    #[test]
    fn overrides_and_legacy() {
        let o = AlgorithmOverrides {
            key_transport: Some(KeyTransport::RsaOaep),
            ..Default::default()
        };
        let a = Algorithms::resolve(Profile::Default, o, false).unwrap();
        assert_eq!(a.oaep_digest, OaepDigest::Sha256);
        let o = AlgorithmOverrides {
            key_transport: Some(KeyTransport::Rsa15),
            ..Default::default()
        };
        assert_eq!(
            Algorithms::resolve(Profile::Default, o, false),
            Err(AlgorithmError::LegacyNotAllowed)
        );
        assert!(Algorithms::resolve(Profile::Default, o, true).is_ok());
    }

    #[test]
    fn mgf1p_takes_a_digest_and_keeps_it() {
        let o = AlgorithmOverrides {
            oaep_digest: Some(OaepDigest::Sha256),
            ..Default::default()
        };
        let a = Algorithms::resolve(Profile::Default, o, false).unwrap();
        assert_eq!(a.key_transport, KeyTransport::RsaOaepMgf1p);
        assert_eq!(a.oaep_digest, OaepDigest::Sha256);
        assert_eq!(
            a.to_string(),
            "issuer-serial + aes256-cbc + rsa-oaep-mgf1p(sha256)"
        );
        // Switching a modern route to mgf1p without a digest means SHA-1.
        let o = AlgorithmOverrides {
            key_transport: Some(KeyTransport::RsaOaepMgf1p),
            ..Default::default()
        };
        let a = Algorithms::resolve(Profile::Modern, o, false).unwrap();
        assert_eq!(a.oaep_digest, OaepDigest::Sha1);
        let o = AlgorithmOverrides {
            key_transport: Some(KeyTransport::Rsa15),
            oaep_digest: Some(OaepDigest::Sha256),
            ..Default::default()
        };
        assert_eq!(
            Algorithms::resolve(Profile::Default, o, true),
            Err(AlgorithmError::Rsa15Digest(OaepDigest::Sha256))
        );
    }

    #[test]
    fn policy_suite_profiles() {
        for p in [Profile::Basic256, Profile::Basic256Sha256] {
            let a = p.algorithms();
            assert_eq!(a.key_transport, KeyTransport::RsaOaepMgf1p);
            assert_eq!(a.oaep_digest, OaepDigest::Sha1);
            assert_eq!(a.data_encryption, DataEncryption::Aes256Cbc);
        }
        assert_eq!(
            Profile::Basic128.algorithms().data_encryption,
            DataEncryption::Aes128Cbc
        );
        assert_eq!("basic256sha256".parse(), Ok(Profile::Basic256Sha256));
    }

    #[test]
    fn signing_profiles_match_the_design() {
        let b = Profile::Basic256Sha256;
        let (enc, sign) = (b.algorithms(), b.signing().unwrap());
        assert_eq!(enc.key_identifier, KeyIdentifier::IssuerSerial);
        assert_eq!(enc.data_encryption, DataEncryption::Aes256Cbc);
        assert_eq!(enc.key_transport, KeyTransport::RsaOaepMgf1p);
        assert_eq!(sign.signature_algorithm, SignatureAlgorithm::RsaSha256);
        assert_eq!(sign.digest_algorithm, DigestAlgorithm::Sha256);
        assert_eq!(sign.key_identifier, KeyIdentifier::Bst);
        assert!(sign.timestamp);
        let w = Profile::WcfBasic256Sign;
        assert_eq!(w.algorithms().key_identifier, KeyIdentifier::Thumbprint);
        assert_eq!(
            w.signing().unwrap().signature_algorithm,
            SignatureAlgorithm::RsaSha1
        );
        assert_eq!("wcf-basic256-sign".parse(), Ok(Profile::WcfBasic256Sign));
        assert_eq!(Profile::Default.signing(), None);
        for s in SignatureAlgorithm::ALL {
            assert_eq!(SignatureAlgorithm::from_uri(s.uri()), Some(*s));
        }
        for d in DigestAlgorithm::ALL {
            assert_eq!(DigestAlgorithm::from_uri(d.uri()), Some(*d));
        }
    }

    #[test]
    fn wcf_profiles_write_the_issuer_as_wcf_reads_it() {
        let o = AlgorithmOverrides {
            key_identifier: Some(KeyIdentifier::IssuerSerial),
            ..Default::default()
        };
        let a = Algorithms::resolve(Profile::WcfBasic256, o, false).unwrap();
        assert_eq!(a.issuer_name_format, IssuerNameFormat::Wcf);
        assert_eq!(
            a.to_string(),
            "issuer-serial(wcf) + aes256-cbc + rsa-oaep-mgf1p"
        );
        let o = AlgorithmOverrides {
            issuer_name_format: Some(IssuerNameFormat::Wcf),
            ..Default::default()
        };
        let a = Algorithms::resolve(Profile::Default, o, false).unwrap();
        assert_eq!(a.issuer_name_format, IssuerNameFormat::Wcf);
        assert_eq!("wcf".parse(), Ok(IssuerNameFormat::Wcf));
        assert!("rfc1779".parse::<IssuerNameFormat>().is_err());
    }
}
