//! Domain-separated hashing and signing: the same bytes under two domains give unrelated
//! digests, a signature verifies only under the domain and message it was made for, and keys
//! and signatures each have exactly one accepted encoding.
//!
//! `cargo run -p agora-crypto --example sign_and_verify`

use agora_crypto::{Domain, PublicKey, SecretKey, Signature, domain};

/// A domain of this example's own: every use of a hash or a signature gets a tag.
static GREETING: Domain = Domain::new("example/greeting/v1");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let message = b"hello, agora";
    println!("{:<22} {}", GREETING.tag(), GREETING.hash(message));
    println!("{:<22} {}", domain::TX.tag(), domain::TX.hash(message));
    assert_ne!(GREETING.hash(message), domain::TX.hash(message));

    // Keys derive deterministically from (seed, index), as simulations do; RFC 6979 nonces make
    // signing deterministic too.
    let key = SecretKey::from_seed(42, 0);
    let signature = key.sign(&GREETING, message);
    assert_eq!(signature, key.sign(&GREETING, message));
    key.public_key().verify(&GREETING, message, &signature)?;
    println!("signature verifies under {}", GREETING.tag());

    // The same signature refuses another domain, another message and another key.
    assert!(key.public_key().verify(&domain::TX, message, &signature).is_err());
    assert!(key.public_key().verify(&GREETING, b"hello, agorb", &signature).is_err());
    let other = SecretKey::from_seed(42, 1);
    assert!(other.public_key().verify(&GREETING, message, &signature).is_err());
    println!("refused under another domain, message or key");

    // One encoding each: a compressed 33-byte key and a 64-byte low-s signature round-trip,
    // and garbage is a typed error, never a panic.
    let key_bytes = key.public_key().as_bytes();
    assert_eq!(PublicKey::from_bytes(key_bytes)?, *key.public_key());
    assert_eq!(Signature::from_bytes(signature.as_bytes())?, signature);
    assert!(PublicKey::from_bytes(&[0xff; 33]).is_err());
    assert!(Signature::from_bytes(&[0u8; 10]).is_err());
    println!("key {} bytes, signature {} bytes", key_bytes.len(), signature.as_bytes().len());
    Ok(())
}
