//! Property tests: signatures round-trip, and any single change to message, signature, key or
//! domain makes verification fail; malformed bytes give errors, never panics.

use agora_crypto::{
    Digest, PUBLIC_KEY_BYTES, PublicKey, SIGNATURE_BYTES, SecretKey, Signature, SignatureError,
    domain,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    // Each case signs and verifies a few times (about 100 µs each); keep the suite quick.
    ProptestConfig { cases: 128, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn sign_verify_round_trip(seed: u64, index: u64, message: Vec<u8>) {
        let key = SecretKey::from_seed(seed, index);
        let sig = key.sign(&domain::VOTE, &message);
        prop_assert_eq!(key.public_key().verify(&domain::VOTE, &message, &sig), Ok(()));
        // Through the byte encodings and back.
        let pk = PublicKey::from_bytes(key.public_key().as_bytes()).unwrap();
        let sig2 = Signature::from_bytes(sig.as_bytes()).unwrap();
        prop_assert_eq!(pk.verify(&domain::VOTE, &message, &sig2), Ok(()));
    }

    #[test]
    fn flipped_message_bit_fails(seed: u64, message in proptest::collection::vec(any::<u8>(), 1..256), bit: usize) {
        let key = SecretKey::from_seed(seed, 0);
        let sig = key.sign(&domain::TX_SIGNATURE, &message);
        let mut tampered = message.clone();
        let bit = bit % (tampered.len() * 8);
        tampered[bit / 8] ^= 1 << (bit % 8);
        prop_assert_eq!(
            key.public_key().verify(&domain::TX_SIGNATURE, &tampered, &sig),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn flipped_signature_bit_fails(seed: u64, message: Vec<u8>, bit in 0..SIGNATURE_BYTES * 8) {
        let key = SecretKey::from_seed(seed, 1);
        let sig = key.sign(&domain::VOTE, &message);
        let mut bytes = *sig.as_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        // Either the flipped bytes are not a canonical signature, or they do not verify.
        match Signature::from_bytes(&bytes) {
            Err(e) => prop_assert_eq!(e, SignatureError::Malformed),
            Ok(flipped) => prop_assert_eq!(
                key.public_key().verify(&domain::VOTE, &message, &flipped),
                Err(SignatureError::Invalid)
            ),
        }
    }

    #[test]
    fn flipped_key_bit_fails(seed: u64, message: Vec<u8>, bit in 0..PUBLIC_KEY_BYTES * 8) {
        let key = SecretKey::from_seed(seed, 2);
        let sig = key.sign(&domain::VOTE, &message);
        let mut bytes = *key.public_key().as_bytes();
        bytes[bit / 8] ^= 1 << (bit % 8);
        // Either not a key at all, or another key that the signature does not verify under.
        if let Ok(other) = PublicKey::from_bytes(&bytes) {
            prop_assert_eq!(other.verify(&domain::VOTE, &message, &sig), Err(SignatureError::Invalid));
        }
    }

    #[test]
    fn another_signer_fails(seed: u64, message: Vec<u8>) {
        let a = SecretKey::from_seed(seed, 3);
        let b = SecretKey::from_seed(seed, 4);
        let sig = a.sign(&domain::VOTE, &message);
        prop_assert_eq!(b.public_key().verify(&domain::VOTE, &message, &sig), Err(SignatureError::Invalid));
    }

    #[test]
    fn wrong_domain_fails(seed: u64, message: Vec<u8>) {
        let key = SecretKey::from_seed(seed, 5);
        let sig = key.sign(&domain::VOTE, &message);
        for other in [&domain::BLOCK, &domain::TX_SIGNATURE, &domain::MESSAGE] {
            prop_assert_eq!(key.public_key().verify(other, &message, &sig), Err(SignatureError::Invalid));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = PublicKey::from_bytes(&bytes);
        let _ = Signature::from_bytes(&bytes);
        let _ = postcard::from_bytes::<PublicKey>(&bytes);
        let _ = postcard::from_bytes::<Signature>(&bytes);
        let _ = postcard::from_bytes::<Digest>(&bytes);
        if let Ok(s) = std::str::from_utf8(&bytes) {
            let _ = s.parse::<Digest>();
        }
    }

    #[test]
    fn arbitrary_fixed_length_bytes_are_errors_or_valid(pk in proptest::array::uniform32(any::<u8>()), tail: u8, sig in proptest::collection::vec(any::<u8>(), SIGNATURE_BYTES)) {
        let mut key_bytes = [0u8; PUBLIC_KEY_BYTES];
        key_bytes[..32].copy_from_slice(&pk);
        key_bytes[32] = tail;
        if let Ok(k) = PublicKey::from_bytes(&key_bytes) {
            prop_assert_eq!(k.as_bytes(), &key_bytes);
        }
        if let Ok(s) = Signature::from_bytes(&sig) {
            prop_assert_eq!(&s.as_bytes()[..], &sig[..]);
        }
    }
}
