//! Unit tests of the store cipher, the wrapped data key and the KEK sources.

use super::*;
use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use idgraph_aead::Tampered;
use kek::parse_key;

fn kek_bytes(b: u8) -> KeyBytes {
    Zeroizing::new([b; 32])
}

fn local(b: u8) -> Kek {
    Kek::Local {
        key: kek_bytes(b),
        source: "test".into(),
    }
}

fn cipher() -> StoreCipher {
    StoreCipher::new("id", &kek_bytes(7)).expect("cipher")
}

fn enabled_file(path: &Path) -> EncryptionSettings {
    EncryptionSettings {
        enabled: true,
        kek: KekSettings {
            file: Some(path.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn write_kek(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write kek");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    path
}

#[test]
fn values_round_trip_with_fresh_nonces_and_bound_to_their_key() {
    let c = cipher();
    let a = c.seal_value(b"k1", b"alice@example.com").expect("seal");
    let b = c.seal_value(b"k1", b"alice@example.com").expect("seal");
    assert_ne!(a, b, "random nonces: equal values differ on disk");
    assert_eq!(c.open_value(b"k1", &a).expect("open"), b"alice@example.com");
    assert!(!a.windows(5).any(|w| w == b"alice"));
    // Under another key (associated data) the value does not open.
    assert!(matches!(
        c.open_value(b"k2", &a),
        Err(CryptoError::Tampered)
    ));
}

#[test]
fn values_open_in_their_own_buffer_exactly_as_from_a_copy() {
    let c = cipher();
    for len in [0usize, 1, 15, 16, 17, 700] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let sealed = c.seal_value(b"profiles\0g\0p1", &plain).expect("seal");
        assert_eq!(
            c.open_value_owned(b"profiles\0g\0p1", sealed.clone())
                .expect("open"),
            plain
        );
        assert_eq!(
            c.open_value(b"profiles\0g\0p1", &sealed).expect("open"),
            plain
        );
        // Another record's associated data, any flipped bit, or a cut value: refused.
        assert!(matches!(
            c.open_value_owned(b"profiles\0g\0p2", sealed.clone()),
            Err(CryptoError::Tampered)
        ));
        for at in [0, sealed.len() / 2, sealed.len() - 1] {
            let mut bad = sealed.clone();
            bad[at] ^= 0x10;
            assert!(matches!(
                c.open_value_owned(b"profiles\0g\0p1", bad),
                Err(CryptoError::Tampered)
            ));
        }
        assert!(matches!(
            c.open_value_owned(b"profiles\0g\0p1", sealed[..27].to_vec()),
            Err(CryptoError::Tampered)
        ));
    }
}

#[test]
fn tampered_values_and_keys_are_refused() {
    let c = cipher();
    let mut v = c.seal_value(b"", b"secret").expect("seal");
    let last = v.len() - 1;
    v[last] ^= 1;
    assert!(matches!(c.open_value(b"", &v), Err(CryptoError::Tampered)));
    assert!(matches!(
        c.open_value(b"", b"short"),
        Err(CryptoError::Tampered)
    ));
    let mut k = c.seal_key(b"email:a@b.c");
    k[3] = if k[3] == b'A' { b'B' } else { b'A' };
    assert!(c.open_key(&k).is_err());
    for bad in [
        &b"short"[..],
        b"with\0zero and more than sixteen bytes",
        b"bad escape \x01\x07 and more",
    ] {
        assert!(matches!(c.open_key(bad), Err(CryptoError::Tampered)));
    }
}

#[test]
fn keys_are_deterministic_zero_free_and_open() {
    let c = cipher();
    let a = c.seal_key(b"email:alice@example.com");
    assert_eq!(a, c.seal_key(b"email:alice@example.com"));
    assert_ne!(a, c.seal_key(b"email:alice@example.org"));
    assert!(!a.contains(&0));
    assert!(
        a.len() <= b"email:alice@example.com".len() + 16 + 2,
        "the tag and few escapes: {} bytes",
        a.len()
    );
    // Every byte value survives the escaping, and none leaves a `\0` behind.
    let every: Vec<u8> = (0..=255u8).chain([0, 1, 0, 0, 1, 1]).collect();
    let sealed = c.seal_key(&every);
    assert!(!sealed.contains(&0));
    assert_eq!(c.open_key(&sealed).expect("open"), every);
    assert_eq!(
        super::unescape_zeros(&super::escape_zeros(&every)),
        Some(every)
    );
    assert!(!a.windows(5).any(|w| w == b"alice"));
    assert_eq!(c.open_key(&a).expect("open"), b"email:alice@example.com");
    // Another data key gives other ciphertexts and cannot open these.
    let other = StoreCipher::new("id", &kek_bytes(8)).expect("cipher");
    assert_ne!(a, other.seal_key(b"email:alice@example.com"));
    assert!(other.open_key(&a).is_err());
}

#[test]
fn blind_keys_are_deterministic_zero_free_of_one_length_and_hold_nothing_of_the_value() {
    let c = cipher();
    let a = c.blind_key(b"email:alice@example.com");
    assert_eq!(a, c.blind_key(b"email:alice@example.com"));
    assert_ne!(a, c.blind_key(b"email:alice@example.org"));
    assert!(!a.contains(&0));
    assert!(!a.windows(5).any(|w| w == b"alice"));
    // Sixteen bytes before escaping, whatever the input's length (which a sealed key
    // shows).
    for plain in [&b""[..], b"x", b"phone:+15550100", &[b'a'; 1000]] {
        let raw = super::unescape_zeros(&c.blind_key(plain)).expect("an escaping");
        assert_eq!(raw.len(), 16, "{} input bytes", plain.len());
    }
    // A subkey of its own: not the sealed key's tag, and another data key gives another
    // index.
    let sealed = super::unescape_zeros(&c.seal_key(b"email:alice@example.com")).expect("sealed");
    let raw = super::unescape_zeros(&a).expect("blind");
    assert_ne!(&sealed[sealed.len() - 16..], &raw[..]);
    let other = StoreCipher::new("id", &kek_bytes(8)).expect("cipher");
    assert_ne!(a, other.blind_key(b"email:alice@example.com"));
    // No two of many distinct inputs share an index.
    let many: std::collections::HashSet<Vec<u8>> = (0..20_000)
        .map(|i| c.blind_key(format!("email:person{i}@example.com").as_bytes()))
        .collect();
    assert_eq!(many.len(), 20_000);
}

#[test]
fn escaping_is_exactly_the_byte_by_byte_rule_and_refuses_what_it_cannot_make() {
    fn reference(raw: &[u8]) -> Vec<u8> {
        raw.iter()
            .flat_map(|&b| match b {
                0 => vec![1, 1],
                1 => vec![1, 2],
                b => vec![b],
            })
            .collect()
    }
    let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0], vec![1], vec![1, 1], vec![2, 0, 1]];
    let mut x = 0x9e37_79b9u32;
    for len in [1usize, 5, 31, 64, 200] {
        let bytes = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                // Mostly 0 and 1, to put escapes at the start, end and side by side.
                (x % 4) as u8
            })
            .collect();
        inputs.push(bytes);
    }
    for raw in &inputs {
        let escaped = escape_zeros(raw);
        assert_eq!(escaped, reference(raw), "{raw:?}");
        assert_eq!(unescape_zeros(&escaped).as_deref(), Some(raw.as_slice()));
    }
    for bad in [&[0u8][..], &[5, 0, 5], &[1], &[7, 1], &[1, 3], &[1, 1, 1]] {
        assert_eq!(unescape_zeros(bad), None, "{bad:?}");
    }
}

#[test]
fn the_encryption_only_siv_is_the_crates_aes_256_gcm_siv() {
    // Values and wrapped data keys use AES-GCM-SIV over the encryption-only AES-256; it
    // must seal exactly as `Aes256GcmSiv` does (so stores and key files written either
    // way open) and open what the reference sealed.
    for k in [0u8, 9, 0xff] {
        let key = kek_bytes(k);
        let reference = Aes256GcmSiv::new_from_slice(key.as_slice()).expect("key");
        let ours = RandomNonceSiv::new(&key).expect("key");
        for len in [0usize, 1, 16, 17, 33, 300] {
            let nonce = [k ^ len as u8; NONCE_LEN];
            let aad = [b"profiles\0g\0".as_slice(), &[len as u8]].concat();
            let plain: Vec<u8> = (0..len).map(|i| (i * 13 + k as usize) as u8).collect();
            let mut a = plain.clone();
            let ta = reference
                .encrypt_in_place_detached(Nonce::from_slice(&nonce), &aad, &mut a)
                .expect("seal");
            let sealed = [&nonce[..], &a, ta.as_slice()].concat();
            let ours_sealed = ours.seal_with_nonce(&nonce, &aad, &plain).expect("seal");
            assert_eq!(ours_sealed, sealed, "key {k}, length {len}");
            assert_eq!(ours.open(&aad, sealed.clone()).expect("open"), plain);
            let mut other_aad = aad.clone();
            other_aad[0] ^= 1;
            assert_eq!(ours.open(&other_aad, sealed), Err(Tampered));
        }
    }
}

#[test]
fn fixed_nonce_siv_is_aes_gcm_siv_under_the_zero_nonce() {
    // The precomputed-key construction must give exactly the crate's RFC 8452 output
    // (ciphertext and tag) for the zero nonce and no associated data, at every length
    // around the block boundaries, under several keys; and open what it seals.
    for k in [0u8, 7, 0xa5, 0xff] {
        let key = kek_bytes(k);
        let reference = Aes256GcmSiv::new_from_slice(key.as_slice()).expect("key");
        let ours = FixedNonceSiv::new(&key).expect("key");
        for len in 0..=100usize {
            let plain: Vec<u8> = (0..len)
                .map(|i| (i * 31 + len + k as usize) as u8)
                .collect();
            let mut expected = plain.clone();
            let tag = reference
                .encrypt_in_place_detached(Nonce::from_slice(&[0; NONCE_LEN]), b"", &mut expected)
                .expect("seal");
            let mut got = plain.clone();
            let our_tag = ours.seal_in_place(&mut got);
            assert_eq!(got, expected, "ciphertext, key {k}, length {len}");
            assert_eq!(&our_tag[..], tag.as_slice(), "tag, key {k}, length {len}");
            // The blind-index function is that tag alone.
            assert_eq!(ours.prf(&plain), our_tag, "prf, key {k}, length {len}");
            ours.open_in_place(&mut got, &our_tag).expect("open");
            assert_eq!(got, plain, "round trip, key {k}, length {len}");
        }
    }
}

#[test]
fn fixed_nonce_siv_refuses_any_flipped_bit_and_keeps_the_ciphertext() {
    let ours = FixedNonceSiv::new(&kek_bytes(3)).expect("key");
    let mut sealed = b"email:someone@example.org".to_vec();
    let tag = ours.seal_in_place(&mut sealed);
    for bit in 0..(sealed.len() + TAG_LEN) * 8 {
        let (mut body, mut t) = (sealed.clone(), tag);
        let byte = bit / 8;
        if byte < body.len() {
            body[byte] ^= 1 << (bit % 8);
        } else {
            t[byte - body.len()] ^= 1 << (bit % 8);
        }
        let before = body.clone();
        assert!(
            matches!(ours.open_in_place(&mut body, &t), Err(Tampered)),
            "bit {bit} flipped must not open"
        );
        assert_eq!(
            body, before,
            "a refused open leaves the ciphertext, bit {bit}"
        );
    }
    let other = FixedNonceSiv::new(&kek_bytes(4)).expect("key");
    let mut body = sealed.clone();
    assert!(
        other.open_in_place(&mut body, &tag).is_err(),
        "another key must not open"
    );
}

#[test]
fn a_data_key_is_created_wrapped_and_reopened_only_with_its_kek() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let good = write_kek(tmp.path(), "kek", &"ab".repeat(32));
    let bad = write_kek(tmp.path(), "other", &"cd".repeat(32));
    let c = store_cipher(&enabled_file(&good), &data)
        .expect("create")
        .expect("on");
    let text = std::fs::read_to_string(data.join(DATA_KEY_FILE)).expect("file");
    assert!(text.contains(c.key_id()));
    let sealed = c.seal_key(b"phone:+441234");
    let again = store_cipher(&enabled_file(&good), &data)
        .expect("reopen")
        .expect("on");
    assert_eq!(again.key_id(), c.key_id());
    assert_eq!(again.open_key(&sealed).expect("open"), b"phone:+441234");
    let err = store_cipher(&enabled_file(&bad), &data).expect_err("wrong kek");
    assert!(
        err.to_string().contains("wrong key-encryption key"),
        "{err}"
    );
    // Off over an encrypted directory: refused, never plaintext.
    let err = store_cipher(&EncryptionSettings::default(), &data).expect_err("off");
    assert!(
        err.to_string().contains("encryption.enabled is false"),
        "{err}"
    );
}

#[test]
fn rotation_rewraps_without_changing_the_data_key() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let old = write_kek(tmp.path(), "old", &"11".repeat(32));
    let new = write_kek(tmp.path(), "new", &"22".repeat(32));
    let c = store_cipher(&enabled_file(&old), &data)
        .expect("create")
        .expect("on");
    let sealed = c.seal_key(b"email:x@y.z");
    let before = std::fs::read(data.join(DATA_KEY_FILE)).expect("file");
    let id = rewrap(
        &Kek::load(&enabled_file(&old).kek).expect("old"),
        &Kek::load(&enabled_file(&new).kek).expect("new"),
        &data,
    )
    .expect("rewrap");
    assert_eq!(id, c.key_id());
    assert_ne!(
        before,
        std::fs::read(data.join(DATA_KEY_FILE)).expect("file")
    );
    let rotated = store_cipher(&enabled_file(&new), &data)
        .expect("new kek")
        .expect("on");
    assert_eq!(rotated.open_key(&sealed).expect("open"), b"email:x@y.z");
    assert!(
        store_cipher(&enabled_file(&old), &data).is_err(),
        "old KEK no longer opens it"
    );
}

#[test]
fn destroying_the_data_key_leaves_a_store_that_cannot_open() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let kek = write_kek(tmp.path(), "kek", &"33".repeat(32));
    store_cipher(&enabled_file(&kek), &data).expect("create");
    std::fs::write(data.join("CURRENT"), "MANIFEST-000001\n").expect("fake store");
    assert!(destroy_data_key(&data).expect("destroy"));
    assert!(!data.join(DATA_KEY_FILE).exists());
    assert!(!destroy_data_key(&data).expect("again"));
    let err = store_cipher(&enabled_file(&kek), &data).expect_err("gone");
    assert!(err.to_string().contains("no data key"), "{err}");
}

#[test]
fn kek_sources_are_checked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let none = Kek::load(&KekSettings::default()).expect_err("none");
    assert!(none.to_string().contains("encryption.kek.file"), "{none}");
    let path = write_kek(tmp.path(), "kek", &"ab".repeat(32));
    let both = Kek::load(&KekSettings {
        file: Some(path.clone()),
        env: Some("IDGRAPH_TEST_KEK_BOTH".into()),
        aws_kms: None,
    })
    .expect_err("both");
    assert!(both.to_string().contains("exactly one"), "{both}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let open = Kek::load(&KekSettings {
            file: Some(path.clone()),
            ..Default::default()
        })
        .expect_err("world-readable");
        assert!(open.to_string().contains("owner-only"), "{open}");
    }
    let short = write_kek(tmp.path(), "short", "abcd");
    let err = Kek::load(&KekSettings {
        file: Some(short),
        ..Default::default()
    })
    .expect_err("short");
    assert!(err.to_string().contains("32-byte key"), "{err}");
    let missing = Kek::load(&KekSettings {
        env: Some("IDGRAPH_TEST_KEK_SURELY_UNSET".into()),
        ..Default::default()
    })
    .expect_err("unset");
    assert!(missing.to_string().contains("is not set"), "{missing}");
    let b64 = base64::engine::general_purpose::STANDARD.encode([9u8; 32]);
    assert_eq!(*parse_key(b64.as_bytes(), "t").expect("b64"), [9u8; 32]);
    assert_eq!(
        *parse_key(format!("{}\n", "0a".repeat(32)).as_bytes(), "t").expect("hex"),
        [10u8; 32]
    );
}

#[test]
fn kms_endpoints_must_be_https_unless_on_this_machine() {
    let load = |endpoint: &str| {
        Kek::load(&KekSettings {
            aws_kms: Some(kek::AwsKmsSettings {
                key_id: "alias/idgraph".into(),
                region: "eu-west-1".into(),
                endpoint: Some(endpoint.into()),
            }),
            ..Default::default()
        })
    };
    for (endpoint, why) in [
        ("http://kms.example.com", "plain HTTP to another machine"),
        ("http://10.0.0.7:4000", "plain HTTP to another machine"),
        ("ftp://127.0.0.1", "scheme ftp"),
        ("not a url", "not a URL"),
    ] {
        let err = load(endpoint).expect_err(endpoint);
        assert!(
            err.to_string().contains(why) && err.to_string().contains("endpoint"),
            "{endpoint}: {err}"
        );
    }
    for endpoint in [
        "https://vpce-1.kms.eu-west-1.vpce.amazonaws.com",
        "http://127.0.0.1:4599",
        "http://localhost:4599",
        "http://[::1]:4599",
    ] {
        let kek = load(endpoint).unwrap_or_else(|e| panic!("{endpoint}: {e}"));
        assert_eq!(kek.describe(), "encryption.kek.aws_kms alias/idgraph");
    }
    let missing = Kek::load(&KekSettings {
        aws_kms: Some(kek::AwsKmsSettings {
            key_id: " ".into(),
            region: "eu-west-1".into(),
            endpoint: None,
        }),
        ..Default::default()
    })
    .expect_err("no key id");
    assert!(
        missing.to_string().contains("key_id and region"),
        "{missing}"
    );
    // A key file wrapped by KMS is not opened by a local KEK: the message names both.
    let err = local(1)
        .unwrap_key("aws_kms", "id", b"x")
        .expect_err("mismatch");
    assert!(err.to_string().contains("wrapped by `aws_kms`"), "{err}");
}
