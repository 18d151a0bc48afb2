//! Deterministic encryption of key segments: AES-256-GCM-SIV (RFC 8452) under one fixed
//! nonce, with that nonce's message-authentication and message-encryption keys derived
//! once instead of per message. Part of `crypto`.
//!
//! `aes-gcm-siv` derives both keys from the key-generating key and the nonce on every
//! call (six AES blocks and an AES-256 key schedule, about three quarters of the time of
//! sealing a 35-byte identifier). With the nonce fixed, they never change. The output is
//! byte for byte `aes-gcm-siv`'s under the zero nonce and empty associated data, which the
//! tests check for every length up to several blocks; decryption checks the tag in
//! constant time before returning anything.

use aes::cipher::{BlockEncrypt, InnerIvInit, KeyInit, StreamCipher, StreamCipherCoreWrapper};
use polyval::universal_hash::UniversalHash;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{CryptoError, KeyBytes, TAG_LEN};

/// RFC 8452 §4 with AES-256: six blocks of (32-bit little-endian counter ‖ nonce), of
/// each ciphertext block the first 8 bytes: 16 bytes of authentication key, then 32 of
/// encryption key.
const DERIVED_BLOCKS: u32 = 6;

/// AES-256-GCM-SIV with the zero nonce and no associated data, its per-nonce keys
/// precomputed (the AES round keys and POLYVAL's key are wiped when dropped).
pub(super) struct FixedNonceSiv {
    enc: aes::Aes256Enc,
    mac: polyval::Polyval,
}

impl FixedNonceSiv {
    /// The cipher of key-generating key `key` and the nonce of twelve zero bytes.
    pub(super) fn new(key: &KeyBytes) -> Result<FixedNonceSiv, CryptoError> {
        let bad = |_| CryptoError::Config("a subkey has the wrong length".into());
        let kgk = aes::Aes256Enc::new_from_slice(key.as_slice()).map_err(bad)?;
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

    /// Encrypts `buffer` in place; returns the tag.
    pub(super) fn seal_in_place(&self, buffer: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self.tag(buffer);
        self.apply_keystream(&tag, buffer);
        tag
    }

    /// Decrypts `buffer` in place if `tag` authenticates it; otherwise `Tampered`, and
    /// `buffer` holds the ciphertext again.
    pub(super) fn open_in_place(
        &self,
        buffer: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), CryptoError> {
        self.apply_keystream(tag, buffer);
        if bool::from(self.tag(buffer).ct_eq(tag)) {
            Ok(())
        } else {
            self.apply_keystream(tag, buffer);
            Err(CryptoError::Tampered)
        }
    }
}
