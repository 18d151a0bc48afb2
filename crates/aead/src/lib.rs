//! AES-256-GCM-SIV (RFC 8452) as idgraph's encryption at rest uses it, in a crate of its
//! own so the generic cipher code is compiled optimized (see Cargo.toml):
//! - [`RandomNonceSiv`]: values sealed under a fresh random nonce (nonce ‖ ciphertext ‖
//!   tag), over the encryption-only AES-256 (GCM-SIV never decrypts a block, so no
//!   decryption round keys are expanded or wiped); same output as `Aes256GcmSiv`.
//! - [`FixedNonceSiv`]: deterministic encryption of key segments under one fixed nonce,
//!   with that nonce's message-authentication and message-encryption keys derived once
//!   instead of per message.
//!
//! `aes-gcm-siv` derives both per-nonce keys from the key-generating key and the nonce on
//! every call (six AES blocks and an AES-256 key schedule, about three quarters of the
//! time of sealing a 35-byte identifier). With the nonce fixed, they never change. The
//! output is byte for byte `aes-gcm-siv`'s under the zero nonce and empty associated data,
//! which idgraph's tests (`src/crypto/tests.rs`) check for every length up to several
//! blocks; decryption checks the tag in constant time before returning anything.

use aes::cipher::{BlockEncrypt, InnerIvInit, KeyInit, StreamCipher, StreamCipherCoreWrapper};
use aes_gcm_siv::aead::AeadInPlace;
use aes_gcm_siv::{AesGcmSiv, Nonce};
use polyval::universal_hash::UniversalHash;
use rand::RngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Bytes of a key.
pub const KEY_LEN: usize = 32;
/// Bytes of a nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes of an authentication tag.
pub const TAG_LEN: usize = 16;

/// A key of the wrong length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadKey;

/// The ciphertext, its tag or its associated data was changed, or another key sealed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tampered;

/// A value longer than AES-GCM-SIV can seal (2^36 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// AES-256-GCM-SIV under a random nonce per message.
pub struct RandomNonceSiv {
    cipher: AesGcmSiv<aes::Aes256Enc>,
}

impl RandomNonceSiv {
    /// The cipher of `key`.
    pub fn new(key: &[u8; KEY_LEN]) -> Result<RandomNonceSiv, BadKey> {
        Ok(RandomNonceSiv {
            cipher: AesGcmSiv::new_from_slice(key).map_err(|_| BadKey)?,
        })
    }

    /// `plain` sealed under a fresh nonce from the thread's CSPRNG, bound to `aad`: nonce ‖
    /// ciphertext ‖ tag, 28 bytes more than `plain`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, TooLong> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        self.seal_with_nonce(&nonce, aad, plain)
    }

    /// [`RandomNonceSiv::seal`] under the caller's `nonce`, which must never repeat under
    /// one key for different messages (GCM-SIV then only reveals that they were equal).
    pub fn seal_with_nonce(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        plain: &[u8],
    ) -> Result<Vec<u8>, TooLong> {
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(nonce);
        out.extend_from_slice(plain);
        let tag = self
            .cipher
            .encrypt_in_place_detached(Nonce::from_slice(nonce), aad, &mut out[NONCE_LEN..])
            .map_err(|_| TooLong)?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// The plaintext of nonce ‖ ciphertext ‖ tag under `aad`, opened in `sealed`'s own
    /// buffer (no copy), or [`Tampered`] (the buffer is then dropped).
    pub fn open(&self, aad: &[u8], mut sealed: Vec<u8>) -> Result<Vec<u8>, Tampered> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(Tampered);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&sealed[..NONCE_LEN]);
        let at = sealed.len() - TAG_LEN;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&sealed[at..]);
        sealed.truncate(at);
        sealed.drain(..NONCE_LEN);
        self.cipher
            .decrypt_in_place_detached(
                Nonce::from_slice(&nonce),
                aad,
                &mut sealed,
                aes_gcm_siv::Tag::from_slice(&tag),
            )
            .map_err(|_| Tampered)?;
        Ok(sealed)
    }
}

/// RFC 8452 §4 with AES-256: six blocks of (32-bit little-endian counter ‖ nonce), of
/// each ciphertext block the first 8 bytes: 16 bytes of authentication key, then 32 of
/// encryption key.
const DERIVED_BLOCKS: u32 = 6;

/// AES-256-GCM-SIV with the zero nonce and no associated data, its per-nonce keys
/// precomputed (the AES round keys and POLYVAL's key are wiped when dropped).
pub struct FixedNonceSiv {
    enc: aes::Aes256Enc,
    mac: polyval::Polyval,
}

impl FixedNonceSiv {
    /// The cipher of key-generating key `key` and the nonce of twelve zero bytes.
    pub fn new(key: &[u8; KEY_LEN]) -> Result<FixedNonceSiv, BadKey> {
        let bad = |_| BadKey;
        let kgk = aes::Aes256Enc::new_from_slice(key).map_err(bad)?;
        let mut material = Zeroizing::new([0u8; 8 * DERIVED_BLOCKS as usize]);
        for (counter, chunk) in (0..DERIVED_BLOCKS).zip(material.chunks_mut(8)) {
            // The nonce's twelve bytes are zero.
            let mut block = Zeroizing::new([0u8; 16]);
            block[..4].copy_from_slice(&counter.to_le_bytes());
            kgk.encrypt_block(aes::Block::from_mut_slice(block.as_mut_slice()));
            chunk.copy_from_slice(&block[..8]);
        }
        Ok(FixedNonceSiv {
            mac: polyval::Polyval::new_from_slice(&material[..16]).map_err(bad)?,
            enc: aes::Aes256Enc::new_from_slice(&material[16..]).map_err(bad)?,
        })
    }

    /// The tag of `plain` (RFC 8452 §4: POLYVAL of the padded text and the length block,
    /// XORed with the zero nonce, top bit cleared, encrypted).
    fn tag(&self, plain: &[u8]) -> [u8; TAG_LEN] {
        let mut polyval = self.mac.clone();
        polyval.update_padded(plain);
        let mut lengths = polyval::Block::default();
        // Associated data: none (bits 0..64 stay zero); then the text's length in bits.
        lengths[8..].copy_from_slice(&((plain.len() as u64) * 8).to_le_bytes());
        polyval.update(&[lengths]);
        let mut tag = polyval.finalize();
        tag[15] &= 0x7f;
        self.enc.encrypt_block(&mut tag);
        tag.into()
    }

    /// AES-CTR (32-bit little-endian counter) from the tag with its top bit set.
    fn apply_keystream(&self, tag: &[u8; TAG_LEN], buffer: &mut [u8]) {
        let mut counter = aes::Block::from(*tag);
        counter[15] |= 0x80;
        let core = ctr::CtrCore::<&aes::Aes256Enc, ctr::flavors::Ctr32LE>::inner_iv_init(
            &self.enc, &counter,
        );
        StreamCipherCoreWrapper::from_core(core).apply_keystream(buffer);
    }

    /// The tag `plain` would be sealed with, alone: a pseudorandom function of `plain`
    /// under this key (AES of an almost-XOR-universal hash of it), 16 bytes whatever its
    /// length. idgraph's blind indexes are this tag under a key used for nothing else.
    pub fn prf(&self, plain: &[u8]) -> [u8; TAG_LEN] {
        self.tag(plain)
    }

    /// Encrypts `buffer` in place; returns the tag.
    pub fn seal_in_place(&self, buffer: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self.tag(buffer);
        self.apply_keystream(&tag, buffer);
        tag
    }

    /// Decrypts `buffer` in place if `tag` authenticates it; otherwise `Tampered`, and
    /// `buffer` holds the ciphertext again.
    pub fn open_in_place(&self, buffer: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), Tampered> {
        self.apply_keystream(tag, buffer);
        if bool::from(self.tag(buffer).ct_eq(tag)) {
            Ok(())
        } else {
            self.apply_keystream(tag, buffer);
            Err(Tampered)
        }
    }
}
