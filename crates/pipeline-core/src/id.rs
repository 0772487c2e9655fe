//! Upload ids: sealed claims, so `GET /uploads/{id}` needs no lookup table.
//!
//! An id is `base64url(version | nonce | ChaCha20-Poly1305(claims))`. The 96
//! random nonce bits make it unguessable; the AEAD tag proves this Worker
//! issued it (a forged or altered id fails to open, and answers 404); the
//! sealed claims (key, acceptance time, size, operation) let the status
//! route find the key's scheduler and answer `queued` before the queue has
//! delivered the write, without revealing the key to anyone.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = 8 + 8 + 1;
/// The Poly1305 authentication tag appended by the cipher.
const TAG_LEN: usize = 16;
/// Longest id string accepted for opening; anything longer is not ours.
pub const MAX_ID_CHARS: usize = 2048;

/// A write to a key: a put of bytes or a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteOp {
    Put,
    Delete,
}

impl WriteOp {
    pub fn as_str(self) -> &'static str {
        match self {
            WriteOp::Put => "put",
            WriteOp::Delete => "delete",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "put" => Some(WriteOp::Put),
            "delete" => Some(WriteOp::Delete),
            _ => None,
        }
    }
}

/// What an upload id carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub key: String,
    pub accepted_ms: i64,
    pub size: u64,
    pub op: WriteOp,
}

/// The length, in characters (ASCII, so also bytes), of every id
/// [`IdSealer::seal`] gives for a key of `key_bytes` UTF-8 bytes: the
/// unpadded base64url of version, nonce, sealed claims and tag. About 61
/// plus 4/3 of the key's length.
#[must_use]
pub const fn sealed_id_len(key_bytes: usize) -> usize {
    let raw = 1 + NONCE_LEN + HEADER_LEN + key_bytes + TAG_LEN;
    (raw * 4).div_ceil(3)
}

/// Why an id could not be opened. All of them answer `404 upload_not_found`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("not a valid upload id")]
    Malformed,
    #[error("upload id was not issued by this deployment")]
    Forged,
}

/// Seals and opens upload ids with a key derived from a deployment secret.
pub struct IdSealer {
    cipher: ChaCha20Poly1305,
}

impl IdSealer {
    /// Derives the sealing key from `secret` (domain-separated SHA-256).
    pub fn new(secret: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"r2-hotkey-pipeline/upload-id/v1\0");
        h.update(secret);
        let key = h.finalize();
        Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// Seals `claims` under a fresh random `nonce` (96 bits from a CSPRNG).
    pub fn seal(&self, claims: &Claims, nonce: [u8; NONCE_LEN]) -> String {
        let mut plain = Vec::with_capacity(HEADER_LEN + claims.key.len());
        plain.extend_from_slice(&claims.accepted_ms.to_be_bytes());
        plain.extend_from_slice(&claims.size.to_be_bytes());
        plain.push(match claims.op {
            WriteOp::Put => 0,
            WriteOp::Delete => 1,
        });
        plain.extend_from_slice(claims.key.as_bytes());
        let aad = [VERSION];
        // Encryption with a valid key and nonce cannot fail for in-memory
        // buffers; an empty ciphertext would simply never open again.
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens an id.
    ///
    /// # Errors
    /// [`IdError::Malformed`] for anything that is not an id's shape,
    /// [`IdError::Forged`] when the authentication tag does not verify.
    pub fn open(&self, id: &str) -> Result<Claims, IdError> {
        if id.is_empty() || id.len() > MAX_ID_CHARS {
            return Err(IdError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD.decode(id).map_err(|_| IdError::Malformed)?;
        let (version, rest) = raw.split_first().ok_or(IdError::Malformed)?;
        if *version != VERSION || rest.len() < NONCE_LEN + TAG_LEN + HEADER_LEN {
            return Err(IdError::Malformed);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &[VERSION],
                },
            )
            .map_err(|_| IdError::Forged)?;
        let (header, key) = plain
            .split_at_checked(HEADER_LEN)
            .ok_or(IdError::Malformed)?;
        let accepted_ms =
            i64::from_be_bytes(header[0..8].try_into().map_err(|_| IdError::Malformed)?);
        let size = u64::from_be_bytes(header[8..16].try_into().map_err(|_| IdError::Malformed)?);
        let op = match header[16] {
            0 => WriteOp::Put,
            1 => WriteOp::Delete,
            _ => return Err(IdError::Malformed),
        };
        let key = String::from_utf8(key.to_vec()).map_err(|_| IdError::Malformed)?;
        Ok(Claims {
            key,
            accepted_ms,
            size,
            op,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn claims() -> Claims {
        Claims {
            key: "photos/cat.jpg".into(),
            accepted_ms: 1_795_000_000_123,
            size: 42,
            op: WriteOp::Put,
        }
    }

    #[test]
    fn seal_then_open_round_trips_and_is_url_safe() {
        let s = IdSealer::new(b"secret");
        let id = s.seal(&claims(), [7; 12]);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{id}"
        );
        assert_eq!(s.open(&id).unwrap(), claims());
    }

    #[test]
    fn ids_do_not_reveal_the_key() {
        let id = IdSealer::new(b"secret").seal(&claims(), [1; 12]);
        let raw = URL_SAFE_NO_PAD.decode(&id).unwrap();
        assert!(!raw.windows(6).any(|w| w == b"photos"));
    }

    #[test]
    fn another_secret_or_a_flipped_bit_is_refused() {
        let id = IdSealer::new(b"secret").seal(&claims(), [3; 12]);
        assert_eq!(IdSealer::new(b"other").open(&id), Err(IdError::Forged));
        let mut raw = URL_SAFE_NO_PAD.decode(&id).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(
            IdSealer::new(b"secret").open(&tampered),
            Err(IdError::Forged)
        );
    }

    #[test]
    fn sealed_id_len_is_the_length_of_every_sealed_id() {
        let s = IdSealer::new(b"secret");
        for len in 0..=1100 {
            let mut c = claims();
            c.key = "k".repeat(len);
            assert_eq!(
                s.seal(&c, [9; 12]).len(),
                sealed_id_len(len),
                "key of {len} bytes"
            );
        }
        // Bytes, not characters: é is two bytes, 🦀 four.
        for key in ["é".repeat(300), "🦀".repeat(256), "a/é/🦀".repeat(90)] {
            let mut c = claims();
            c.key = key.clone();
            assert_eq!(s.seal(&c, [1; 12]).len(), sealed_id_len(key.len()));
        }
        // The README's rule of thumb: about 60 characters plus 4/3 of the key.
        assert_eq!(sealed_id_len(0), 62);
        assert_eq!(sealed_id_len(1024), 1427);
    }

    #[test]
    fn distinct_nonces_give_distinct_ids() {
        let s = IdSealer::new(b"secret");
        assert_ne!(s.seal(&claims(), [1; 12]), s.seal(&claims(), [2; 12]));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn opening_arbitrary_strings_never_panics(s in ".{0,300}") {
            let _ = IdSealer::new(b"k").open(&s);
        }

        #[test]
        fn any_sealed_id_has_the_predicted_length(key in "\\PC{0,300}", ms in any::<i64>(), size in any::<u64>(), nonce in any::<[u8; 12]>(), secret in any::<Vec<u8>>()) {
            let c = Claims { key, accepted_ms: ms, size, op: WriteOp::Put };
            prop_assert_eq!(IdSealer::new(&secret).seal(&c, nonce).len(), sealed_id_len(c.key.len()));
        }

        #[test]
        fn round_trips_any_claims(key in "\\PC{1,64}", ms in 0i64..4_000_000_000_000, size in any::<u64>(), del in any::<bool>(), nonce in any::<[u8; 12]>()) {
            let c = Claims { key, accepted_ms: ms, size, op: if del { WriteOp::Delete } else { WriteOp::Put } };
            let s = IdSealer::new(b"k");
            prop_assert_eq!(s.open(&s.seal(&c, nonce)).unwrap(), c);
        }
    }
}

/// Fuzzing: opening never panics on any bytes of an id's shape,
/// and nothing but an untouched id of this secret opens.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_of_an_ids_shape_never_open(mut raw in proptest::collection::vec(any::<u8>(), 0..200), v1 in any::<bool>()) {
            if v1 && !raw.is_empty() {
                raw[0] = VERSION;
            }
            let id = URL_SAFE_NO_PAD.encode(&raw);
            prop_assert!(IdSealer::new(b"k").open(&id).is_err());
        }

        #[test]
        fn any_flipped_bit_is_refused(key in "\\PC{1,40}", bit in any::<usize>(), nonce in any::<[u8; 12]>()) {
            let s = IdSealer::new(b"secret");
            let c = Claims { key, accepted_ms: 1, size: 2, op: WriteOp::Put };
            let mut raw = URL_SAFE_NO_PAD.decode(s.seal(&c, nonce)).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let bit = bit % (raw.len() * 8);
            raw[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(s.open(&URL_SAFE_NO_PAD.encode(&raw)).is_err());
        }

        #[test]
        fn another_secret_never_opens(a in "[ -~]{1,20}", b in "[ -~]{1,20}", key in "\\PC{1,20}", nonce in any::<[u8; 12]>()) {
            prop_assume!(a != b);
            let c = Claims { key, accepted_ms: 5, size: 0, op: WriteOp::Delete };
            let id = IdSealer::new(a.as_bytes()).seal(&c, nonce);
            prop_assert!(IdSealer::new(b.as_bytes()).open(&id).is_err());
        }

        #[test]
        fn ids_never_hold_the_keys_bytes(key in "[a-z/]{8,64}", nonce in any::<[u8; 12]>()) {
            let c = Claims { key: key.clone(), accepted_ms: 7, size: 9, op: WriteOp::Put };
            let id = IdSealer::new(b"s").seal(&c, nonce);
            let raw = URL_SAFE_NO_PAD.decode(&id).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(!raw.windows(8).any(|w| key.as_bytes().windows(8).any(|k| k == w)));
            prop_assert!(!id.contains(&key));
        }
    }
}
