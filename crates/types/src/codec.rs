//! The one canonical wire and hashing format: postcard, behind a size limit.
//!
//! Every value agora sends, stores or signs is encoded here. postcard was chosen over bincode
//! because its wire format is specified and frozen at 1.0 (so a golden test can pin it), it is
//! compact (varint integers), and its decoder never preallocates more than the remaining input
//! can hold.
//!
//! [`decode`] is strict: the input must be at most the size limit, be consumed entirely, and be
//! the *canonical* encoding of the value it decodes to (postcard itself would accept
//! non-minimal varints, so the decoder re-encodes and compares). Every value therefore has
//! exactly one encoding, and a Byzantine sender cannot produce two byte strings for one message.

use agora_crypto::{Digest, Domain, DomainHasher};
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The largest encoded message agora accepts or produces: 4 MiB. A batch of a few thousand
/// orders is a few hundred kilobytes, so this bounds memory per message without limiting
/// realistic use.
pub const MESSAGE_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input (or the encoding of a value) is larger than the limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The size found.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// The bytes are not an encoding of the expected type (truncated, bad tag, invalid value).
    #[error("malformed message: {0}")]
    Malformed(String),
    /// A valid value was decoded, but bytes were left over.
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    /// The bytes decode, but are not the value's canonical encoding.
    #[error("non-canonical encoding")]
    NonCanonical,
}

impl From<postcard::Error> for CodecError {
    fn from(e: postcard::Error) -> Self {
        CodecError::Malformed(e.to_string())
    }
}

/// Appends the encoding of `value` to `out`, under [`MESSAGE_BYTES_MAX`].
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    encode_into_with_limit(value, out, MESSAGE_BYTES_MAX)
}

/// Appends the encoding of `value` to `out`, refusing (and leaving `out` as it was) one over
/// `limit` bytes: for values that are not messages, such as journal records and snapshots.
pub fn encode_into_with_limit<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), CodecError> {
    let start = out.len();
    let taken = std::mem::take(out);
    *out = postcard::to_extend(value, taken)?;
    let size = out.len() - start;
    if size > limit {
        out.truncate(start);
        return Err(CodecError::TooLarge { size, limit });
    }
    Ok(())
}

/// The encoding of `value`, as a shareable buffer, under [`MESSAGE_BYTES_MAX`].
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, CodecError> {
    encode_with_limit(value, MESSAGE_BYTES_MAX)
}

/// The encoding of `value`, as a shareable buffer, under `limit` bytes.
pub fn encode_with_limit<T: Serialize + ?Sized>(
    value: &T,
    limit: usize,
) -> Result<Bytes, CodecError> {
    let mut out = Vec::with_capacity(encoded_len(value).min(limit));
    encode_into_with_limit(value, &mut out, limit)?;
    Ok(Bytes::from(out))
}

/// The encoding of `value` to be signed or verified, without the message limit (a signature may
/// cover a part of a message that is checked against the limit as a whole).
///
/// Encoding agora's own types cannot fail: their `Serialize` is derived and every sequence has a
/// known length, and a value decoded from the wire always encodes again. Should that ever break,
/// this panics, because the alternative, signing an empty or partial buffer, would make
/// unrelated messages share a signature.
pub fn signing_bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_stdvec(value).expect("agora's types always encode")
}

/// The length of the encoding of `value`, computed without allocating.
pub fn encoded_len<T: Serialize + ?Sized>(value: &T) -> usize {
    // Serializing into the size-counting flavor cannot fail for agora's types.
    postcard::experimental::serialized_size(value).unwrap_or(usize::MAX)
}

/// The digest under `domain` of the encoding of `value`, hashed as it is produced, never held
/// whole: equal to `domain.hash(&encode(value)?)`, without that size limit (a replica's whole
/// state is hashed, never sent). For large values this saves building the encoding.
pub fn digest<T: Serialize + ?Sized>(domain: &Domain, value: &T) -> Result<Digest, CodecError> {
    let flavor = HashFlavor { hasher: domain.hasher(), buf: Vec::with_capacity(HASH_BUFFER) };
    Ok(postcard::serialize_with_flavor(value, flavor)?)
}

/// Bytes [`digest`] gathers before feeding the hasher. blake3 hashes many 1 KiB chunks in
/// parallel lanes but the last chunk of each update on one, so long runs are fastest.
const HASH_BUFFER: usize = 64 * 1024;

/// A postcard output that hashes: pieces are gathered in a buffer and fed to the hasher in
/// [`HASH_BUFFER`]-byte runs.
struct HashFlavor {
    hasher: DomainHasher,
    /// Never more than [`HASH_BUFFER`] bytes (on the heap: the flavor is moved by value).
    buf: Vec<u8>,
}

impl HashFlavor {
    fn flush(&mut self) {
        self.hasher.update(&self.buf);
        self.buf.clear();
    }
}

impl postcard::ser_flavors::Flavor for HashFlavor {
    type Output = Digest;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        if self.buf.len() == HASH_BUFFER {
            self.flush();
        }
        self.buf.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        if bytes.len() > HASH_BUFFER - self.buf.len() {
            self.flush();
        }
        if bytes.len() >= HASH_BUFFER {
            self.hasher.update(bytes);
        } else {
            self.buf.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<Digest> {
        self.flush();
        Ok(self.hasher.finalize())
    }
}

/// Decodes a `T` from exactly `bytes`, under [`MESSAGE_BYTES_MAX`].
pub fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_with_limit(bytes, MESSAGE_BYTES_MAX)
}

/// Decodes a `T` from exactly `bytes`, refusing inputs over `limit` bytes before reading them.
pub fn decode_with_limit<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, CodecError> {
    if bytes.len() > limit {
        return Err(CodecError::TooLarge { size: bytes.len(), limit });
    }
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes(rest.len()));
    }
    // Canonical means: encoding the value again gives back exactly the input.
    if encoded_len(&value) != bytes.len() {
        return Err(CodecError::NonCanonical);
    }
    let mut again = Vec::with_capacity(bytes.len());
    encode_into(&value, &mut again)?;
    if again != bytes {
        return Err(CodecError::NonCanonical);
    }
    Ok(value)
}

/// Deserializes a sequence without trusting its claimed length for preallocation: the vector
/// grows as elements actually decode, so a short input claiming many elements allocates little.
pub(crate) fn deserialize_vec_unreserved<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct Unreserved<T>(std::marker::PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for Unreserved<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a sequence")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                out.push(item);
            }
            Ok(out)
        }
    }
    deserializer.deserialize_seq(Unreserved(std::marker::PhantomData))
}

/// Length in bytes of `value` as a postcard varint.
pub(crate) const fn varint_len(mut value: u64) -> usize {
    let mut len = 1;
    while value >= 0x80 {
        value >>= 7;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        let value: (u64, String) = (300, "hi".into());
        let bytes = encode(&value).unwrap();
        assert_eq!(&bytes[..], &[0xac, 0x02, 2, b'h', b'i']);
        assert_eq!(encoded_len(&value), bytes.len());
        assert_eq!(decode::<(u64, String)>(&bytes).unwrap(), value);

        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert_eq!(decode::<(u64, String)>(&trailing), Err(CodecError::TrailingBytes(1)));

        // 300 with a redundant continuation byte: postcard accepts it, agora does not.
        let overlong = [0xac, 0x82, 0x00, 2, b'h', b'i'];
        assert_eq!(decode::<(u64, String)>(&overlong), Err(CodecError::NonCanonical));

        assert!(matches!(decode::<(u64, String)>(&bytes[..3]), Err(CodecError::Malformed(_))));
        assert_eq!(
            decode_with_limit::<(u64, String)>(&bytes, 4),
            Err(CodecError::TooLarge { size: 5, limit: 4 })
        );
    }

    #[test]
    fn streamed_digest_is_the_digest_of_the_encoding() {
        use agora_crypto::domain;
        // Pieces of every size around the buffer's: single bytes (varints), short runs, runs
        // that straddle a flush, and runs longer than the buffer.
        let sizes = [0, 1, 5, HASH_BUFFER - 1, HASH_BUFFER, HASH_BUFFER + 1, 3 * HASH_BUFFER + 7];
        for count in [0, 1, 7, 50, 2_000] {
            let value: Vec<(u64, Vec<u8>)> = (0..count)
                .map(|i: usize| (i as u64 * 977, vec![i as u8; sizes[i * 5 % sizes.len()]]))
                .collect();
            let whole = postcard::to_stdvec(&value).unwrap();
            let streamed = digest(&domain::STATE, &value).unwrap();
            assert_eq!(streamed, domain::STATE.hash(&whole), "{count}");
        }
    }

    #[test]
    fn varint_lengths() {
        for v in [0u64, 1, 127, 128, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            assert_eq!(varint_len(v), encoded_len(&v), "{v}");
        }
    }

    #[test]
    fn oversized_encoding_is_refused() {
        let big = vec![0u8; MESSAGE_BYTES_MAX + 1];
        assert!(matches!(encode(&big), Err(CodecError::TooLarge { .. })));
        let mut out = vec![7];
        assert!(encode_into(&big, &mut out).is_err());
        assert_eq!(out, vec![7], "a failed encode leaves the buffer as it was");
    }
}
