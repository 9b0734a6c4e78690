//! Lowercase hex for fixed-size byte strings (through the `hex` crate), and the serde shape
//! every fixed-size value of this crate shares: a hex string in human-readable formats (JSON),
//! length-prefixed raw bytes in binary ones (the wire codec).

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::ser::Serializer;

/// Writes `bytes` as lowercase hex, without allocating.
pub(crate) fn write(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    let mut buf = [0u8; 128];
    for chunk in bytes.chunks(buf.len() / 2) {
        let out = &mut buf[..2 * chunk.len()];
        ::hex::encode_to_slice(chunk, out).map_err(|_| fmt::Error)?;
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(out).map_err(|_| fmt::Error)?)?;
    }
    Ok(())
}

/// Lowercase hex of `bytes`.
pub(crate) fn encode(bytes: &[u8]) -> String {
    ::hex::encode(bytes)
}

/// Why a hex string was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HexError {
    /// The string does not have exactly twice as many characters as the expected bytes.
    Length { expected: usize, found: usize },
    /// A character that is not a hex digit.
    Digit { position: usize },
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { expected, found } => {
                write!(f, "expected {expected} hex characters, found {found}")
            }
            Self::Digit { position } => write!(f, "not a hex digit at position {position}"),
        }
    }
}

/// Parses exactly `N` bytes of hex (either case).
pub(crate) fn decode<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    if s.len() != 2 * N {
        return Err(HexError::Length { expected: 2 * N, found: s.len() });
    }
    let mut out = [0u8; N];
    ::hex::decode_to_slice(s, &mut out).map_err(|e| match e {
        ::hex::FromHexError::InvalidHexCharacter { index, .. } => {
            HexError::Digit { position: index }
        }
        // The length was checked above.
        ::hex::FromHexError::OddLength | ::hex::FromHexError::InvalidStringLength => {
            HexError::Length { expected: 2 * N, found: s.len() }
        }
    })?;
    Ok(out)
}

/// Serializes fixed-size bytes: hex when human-readable, raw bytes otherwise.
pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&encode(bytes))
    } else {
        serializer.serialize_bytes(bytes)
    }
}

/// Deserializes exactly `N` bytes written by [`serialize`].
pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    struct Fixed<const N: usize>;
    impl<const N: usize> Visitor<'_> for Fixed<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{N} bytes, or {} hex characters", 2 * N)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            decode(v).map_err(E::custom)
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
        }
    }
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(Fixed::<N>)
    } else {
        deserializer.deserialize_bytes(Fixed::<N>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let bytes = [0x00, 0x7f, 0x80, 0xff, 0x12];
        let s = encode(&bytes);
        assert_eq!(s, "007f80ff12");
        assert_eq!(decode::<5>(&s), Ok(bytes));
        assert_eq!(decode::<5>("007F80FF12"), Ok(bytes));
        assert_eq!(decode::<5>("007f80ff1"), Err(HexError::Length { expected: 10, found: 9 }));
        assert_eq!(decode::<5>("007f80ff1g"), Err(HexError::Digit { position: 9 }));
        assert_eq!(decode::<1>("é"), Err(HexError::Digit { position: 0 }));
    }
}
