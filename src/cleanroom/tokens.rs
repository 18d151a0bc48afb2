//! Tokens: what a normalized identifier becomes before it leaves the process.
//!
//! Every identifier is first encoded as one domain-separated message
//! ([`message`]: the protocol label, the collaboration id, the kind and the value, each
//! length-prefixed so no two inputs share an encoding). Then:
//!
//! - **ecdh** ([`EcdhSecret`]): the message is hashed to a ristretto255 point `P`
//!   (`hash_from_bytes::<Sha512>`) and multiplied by a secret scalar `a` drawn fresh for the
//!   run; `a·P` is sent. The peer multiplies by its own `b`; `a·b·P` is the same point
//!   whichever side multiplied first, and nobody holding only `a·P` can test a guess
//!   without `a`.
//! - **hmac** ([`HmacKey`]): `HMAC-SHA256(key, message)` with a key both parties agreed for
//!   the collaboration. Anyone holding the key can test guessed identifiers offline.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha512};

use super::OverlapError;

/// The protocol label at the start of every message (and of the HMAC key check).
pub const DOMAIN: &str = "idgraph-overlap-v1";
/// A token on the wire: a compressed ristretto255 point or an HMAC-SHA256 output.
pub const TOKEN_LEN: usize = 32;
/// The shortest HMAC key accepted.
pub const MIN_KEY_LEN: usize = 32;

pub type Token = [u8; TOKEN_LEN];

/// The domain-separated message of identifier `kind:value` in `collaboration`.
pub fn message(collaboration: &str, kind: &str, value: &str) -> Vec<u8> {
    let mut m =
        Vec::with_capacity(DOMAIN.len() + collaboration.len() + kind.len() + value.len() + 8);
    for part in [DOMAIN, collaboration, kind, value] {
        // Parts are bounded (collaboration ids and kinds are validated, values are at most a
        // few hundred bytes), so the length always fits; saturate rather than wrap anyway.
        m.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        m.extend_from_slice(part.as_bytes());
    }
    m
}

/// A run's secret scalar for the ecdh protocol; zeroed when dropped.
pub struct EcdhSecret(Scalar);

impl EcdhSecret {
    /// A fresh uniformly random scalar from the operating system's generator.
    pub fn random() -> Self {
        EcdhSecret(Scalar::random(&mut rand::rngs::OsRng))
    }

    /// `secret · H(message)`, compressed.
    pub fn blind(&self, message: &[u8]) -> Token {
        (RistrettoPoint::hash_from_bytes::<Sha512>(message) * self.0)
            .compress()
            .to_bytes()
    }

    /// `secret · T` for a point `T` the peer sent; `index` names the token in an error.
    pub fn reblind(&self, token: &Token, index: usize) -> Result<Token, OverlapError> {
        let point = CompressedRistretto(*token)
            .decompress()
            .ok_or(OverlapError::InvalidPoint { index })?;
        if point == RistrettoPoint::default() {
            // The identity: no hashed identifier maps there, and it would match anything
            // multiplied by zero.
            return Err(OverlapError::InvalidPoint { index });
        }
        Ok((point * self.0).compress().to_bytes())
    }
}

impl Drop for EcdhSecret {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.zeroize();
    }
}

/// The HMAC of a collaboration's key (at least [`MIN_KEY_LEN`] bytes), keyed once; the key
/// bytes it was made from are zeroed.
pub struct HmacKey(Hmac<Sha256>);

impl HmacKey {
    pub fn new(mut key: Vec<u8>) -> Result<Self, OverlapError> {
        use zeroize::Zeroize;
        let keyed = (key.len() >= MIN_KEY_LEN)
            .then(|| <Hmac<Sha256> as Mac>::new_from_slice(&key).ok())
            .flatten();
        let len = key.len();
        key.zeroize();
        keyed.map(HmacKey).ok_or_else(|| {
            OverlapError::Invalid(format!(
                "the HMAC key is {len} bytes; it must be at least {MIN_KEY_LEN} random bytes \
                 (e.g. `head -c 32 /dev/urandom > overlap.key`), agreed for this collaboration"
            ))
        })
    }

    fn mac(&self, parts: &[&[u8]]) -> Token {
        let mut mac = self.0.clone();
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// `HMAC-SHA256(key, message)`.
    pub fn token(&self, message: &[u8]) -> Token {
        self.mac(&[message])
    }

    /// A short value both sides exchange in the handshake so that different keys are
    /// refused instead of finding no overlap; it says nothing about the key itself.
    pub fn check(&self, collaboration: &str) -> String {
        let t = self.mac(&[DOMAIN.as_bytes(), b" key check ", collaboration.as_bytes()]);
        t[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_unambiguous() {
        assert_ne!(message("c", "email", "ab"), message("c", "emaila", "b"));
        assert_ne!(message("c1", "email", "x"), message("c", "1email", "x"));
    }

    #[test]
    fn blinding_commutes() {
        let (a, b) = (EcdhSecret::random(), EcdhSecret::random());
        let m = message("collab", "email", "ann@example.com");
        let ab = b.reblind(&a.blind(&m), 0).expect("valid point");
        let ba = a.reblind(&b.blind(&m), 0).expect("valid point");
        assert_eq!(ab, ba);
        assert_ne!(a.blind(&m), b.blind(&m));
        let other = message("collab", "email", "bob@example.com");
        assert_ne!(b.reblind(&a.blind(&other), 0).expect("valid point"), ab);
    }

    #[test]
    fn invalid_points_are_refused() {
        let a = EcdhSecret::random();
        let mut bad = [0xffu8; 32];
        assert!(matches!(
            a.reblind(&bad, 7),
            Err(OverlapError::InvalidPoint { index: 7 })
        ));
        bad = [0u8; 32]; // the identity's encoding
        assert!(a.reblind(&bad, 0).is_err());
    }

    #[test]
    fn hmac_keys_are_long_enough_and_checked() {
        assert!(HmacKey::new(vec![1; 31]).is_err());
        let k = HmacKey::new(vec![1; 32]).expect("key");
        let other = HmacKey::new(vec![2; 32]).expect("key");
        let m = message("c", "phone", "+14155550100");
        assert_eq!(
            k.token(&m),
            HmacKey::new(vec![1; 32]).expect("key").token(&m)
        );
        assert_ne!(k.token(&m), other.token(&m));
        assert_ne!(k.check("c"), other.check("c"));
        assert_eq!(k.check("c").len(), 16);
    }
}
