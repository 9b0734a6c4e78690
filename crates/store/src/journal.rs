//! The consensus journal: an append-only sequence of records, made durable by `sync`.
//!
//! An engine's safety state (the votes it cast, what it locked or prepared) is written here
//! before any message that depends on it leaves the node. Records are numbered by [`Lsn`] from
//! the first record ever appended; pruning drops a prefix and never renumbers.
//!
//! # Record framing
//!
//! Every record, in a file or in memory, is framed the same way (little-endian):
//!
//! ```text
//! | len: u32 | header_sum: u32 | payload_sum: u64 | payload: len bytes |
//! ```
//!
//! `payload_sum` is the first 8 bytes of the payload's digest under `agora/journal-record/v1`;
//! `header_sum` is the first 4 bytes of the digest of `len ‖ payload_sum` under
//! `agora/journal-header/v1`. The header sum lets recovery look for a valid record anywhere
//! after a damaged one for the cost of hashing 12 bytes per position, which is how it tells a
//! torn tail from corruption in the middle.

pub mod engine;
pub mod file;
pub mod memory;

use std::fmt;

use agora_crypto::Domain;
use bytes::Bytes;

use crate::StoreError;

/// The position of a record in a journal: the first record ever appended is `Lsn(0)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Lsn {
    /// The record after this one.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

/// The largest record a journal accepts: 16 MiB, four times the largest message
/// (`agora_types::codec::MESSAGE_BYTES_MAX`), so that a record can carry a whole proposal.
pub const RECORD_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The bytes each record's frame adds before its payload.
pub const RECORD_HEADER_BYTES: usize = 16;

static RECORD: Domain = Domain::new("agora/journal-record/v1");
static HEADER: Domain = Domain::new("agora/journal-header/v1");

/// An append-only, checksummed record log with explicit durability.
///
/// Appending is cheap and not durable; [`Journal::sync`] makes every record appended so far
/// durable at once (group commit: a driver syncs once per pass of its event loop, not once per
/// record). A crash loses at most the records appended since the last sync, always a suffix.
pub trait Journal {
    /// Appends one record and returns its position. It is durable only after the next
    /// [`Journal::sync`]. A record above [`RECORD_BYTES_MAX`] is refused.
    fn append(&mut self, record: &[u8]) -> Result<Lsn, StoreError>;

    /// Makes every record appended so far durable.
    fn sync(&mut self) -> Result<(), StoreError>;

    /// Declares every record before `keep_from` unneeded. An implementation may keep some of
    /// them (a file journal drops whole segments only), but never drops one at or after
    /// `keep_from`. Pruning beyond the next position is clamped to it.
    fn prune(&mut self, keep_from: Lsn) -> Result<(), StoreError> {
        self.prune_once_durable(keep_from, keep_from)
    }

    /// Declares every record before `keep_from` unneeded once the record at `durable_at` (at or
    /// after `keep_from`) is durable: a checkpoint at `durable_at` that still needs a few records
    /// before it keeps them, and a lost checkpoint takes nothing with it. Both points are clamped
    /// to the next position; asking again keeps the furthest of each.
    fn prune_once_durable(&mut self, keep_from: Lsn, durable_at: Lsn) -> Result<(), StoreError>;

    /// The position the next append will get.
    fn next_lsn(&self) -> Lsn;

    /// Every record still kept, in order, with its position: what a restarted engine replays.
    fn records(&mut self) -> Result<Vec<(Lsn, Bytes)>, StoreError>;

    /// The bytes the kept records occupy, framing included: the measure pruning bounds.
    fn size_bytes(&self) -> u64;
}

/// A boxed journal is a journal, so that a driver can hold a file or a memory journal behind
/// one type.
impl<J: Journal + ?Sized> Journal for Box<J> {
    fn append(&mut self, record: &[u8]) -> Result<Lsn, StoreError> {
        (**self).append(record)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        (**self).sync()
    }

    fn prune_once_durable(&mut self, keep_from: Lsn, durable_at: Lsn) -> Result<(), StoreError> {
        (**self).prune_once_durable(keep_from, durable_at)
    }

    fn next_lsn(&self) -> Lsn {
        (**self).next_lsn()
    }

    fn records(&mut self) -> Result<Vec<(Lsn, Bytes)>, StoreError> {
        (**self).records()
    }

    fn size_bytes(&self) -> u64 {
        (**self).size_bytes()
    }
}

/// What recovery cut off the end of a journal: a record whose write a crash interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The position the torn record would have had; the journal continues from here.
    pub lsn: Lsn,
    /// Where it started, in its segment.
    pub offset: u64,
    /// How many bytes were cut.
    pub bytes_cut: u64,
}

/// Appends `payload`'s frame to `out`.
pub(crate) fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u32;
    let payload_sum = sum8(RECORD.hash(payload).as_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&header_sum(len, payload_sum).to_le_bytes());
    out.extend_from_slice(&payload_sum.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The framed size of a record of `len` bytes.
pub(crate) fn framed_len(len: usize) -> u64 {
    (RECORD_HEADER_BYTES + len) as u64
}

/// Refuses a record above [`RECORD_BYTES_MAX`].
pub(crate) fn check_size(record: &[u8]) -> Result<(), StoreError> {
    if record.len() > RECORD_BYTES_MAX {
        return Err(StoreError::RecordTooLarge { len: record.len(), max: RECORD_BYTES_MAX });
    }
    Ok(())
}

fn sum8(digest: &[u8; 32]) -> u64 {
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

fn header_sum(len: u32, payload_sum: u64) -> u32 {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&len.to_le_bytes());
    bytes[4..].copy_from_slice(&payload_sum.to_le_bytes());
    let digest = HEADER.hash(&bytes);
    u32::from_le_bytes(digest.as_bytes()[..4].try_into().expect("4 bytes"))
}

/// What one position of a buffer holds.
#[derive(Debug, PartialEq, Eq)]
enum Frame {
    /// A whole, valid record: its payload's range and where the next frame starts.
    Record { start: usize, end: usize },
    /// The buffer ends inside this frame (a header or payload cut short).
    Short,
    /// A frame that fails its checks, for the reason given.
    Bad(&'static str),
}

fn read_frame(buf: &[u8], at: usize) -> Frame {
    let Some(header) = buf.get(at..at + RECORD_HEADER_BYTES) else {
        return Frame::Short;
    };
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    let stored_header_sum = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let payload_sum = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
    if header_sum(len, payload_sum) != stored_header_sum {
        return Frame::Bad("header checksum mismatch");
    }
    if len as usize > RECORD_BYTES_MAX {
        return Frame::Bad("length above the record limit");
    }
    let start = at + RECORD_HEADER_BYTES;
    let Some(payload) = buf.get(start..start + len as usize) else {
        return Frame::Short;
    };
    if sum8(RECORD.hash(payload).as_bytes()) != payload_sum {
        return Frame::Bad("payload checksum mismatch");
    }
    Frame::Record { start, end: start + len as usize }
}

/// Whether a whole, valid record starts anywhere in `buf` at or after `from`.
fn valid_record_after(buf: &[u8], from: usize) -> bool {
    (from..buf.len().saturating_sub(RECORD_HEADER_BYTES - 1))
        .any(|at| matches!(read_frame(buf, at), Frame::Record { .. }))
}

/// What [`scan`] found in one buffer of frames.
#[derive(Debug)]
pub(crate) struct Scanned {
    /// The payload ranges of the valid records, in order.
    pub records: Vec<(usize, usize)>,
    /// Where the valid records end.
    pub valid_len: usize,
    /// How the buffer ends, when it does not end exactly after the last valid record.
    pub damage: Option<Damage>,
}

/// Damage found after the valid records of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    /// Nothing valid follows: the tail of an interrupted write.
    Torn,
    /// A valid record follows the damage, so it is not a torn tail.
    Corrupt(&'static str),
}

/// Reads frames from `buf` until the first that is not a whole, valid record.
///
/// A torn write can only damage the end of a journal, so damage with no valid record anywhere
/// after it is [`Damage::Torn`]; damage followed by a valid record is [`Damage::Corrupt`]: a
/// record that was once written whole has changed, and cutting there would silently shorten a
/// history that may have been synced. The one case this cannot tell apart is a bit flip in the
/// very last record, which reads as a torn tail; recovery reports every cut.
pub(crate) fn scan(buf: &[u8]) -> Scanned {
    let mut records = Vec::new();
    let mut at = 0;
    loop {
        if at == buf.len() {
            return Scanned { records, valid_len: at, damage: None };
        }
        match read_frame(buf, at) {
            Frame::Record { start, end } => {
                records.push((start, end));
                at = end;
            }
            Frame::Short => return Scanned { records, valid_len: at, damage: Some(Damage::Torn) },
            Frame::Bad(reason) => {
                let damage = if valid_record_after(buf, at + 1) {
                    Damage::Corrupt(reason)
                } else {
                    Damage::Torn
                };
                return Scanned { records, valid_len: at, damage: Some(damage) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(records: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for record in records {
            frame(record, &mut out);
        }
        out
    }

    #[test]
    fn whole_records_scan_back_in_order() {
        let buf = framed(&[b"one", b"", b"three"]);
        let scanned = scan(&buf);
        let payloads: Vec<&[u8]> = scanned.records.iter().map(|&(s, e)| &buf[s..e]).collect();
        assert_eq!(payloads, vec![&b"one"[..], b"", b"three"]);
        assert_eq!(scanned.damage, None);
        assert_eq!(scanned.valid_len, buf.len());
    }

    #[test]
    fn a_cut_inside_the_last_record_is_torn() {
        let buf = framed(&[b"one", b"two"]);
        for cut in 1..framed_len(3) as usize {
            let scanned = scan(&buf[..buf.len() - cut]);
            assert_eq!(scanned.records.len(), 1, "cut {cut}");
            assert_eq!(scanned.damage, Some(Damage::Torn), "cut {cut}");
        }
    }

    #[test]
    fn a_flip_before_a_valid_record_is_corruption() {
        let mut buf = framed(&[b"one", b"two", b"three"]);
        buf[RECORD_HEADER_BYTES] ^= 1;
        let scanned = scan(&buf);
        assert!(scanned.records.is_empty());
        assert_eq!(scanned.damage, Some(Damage::Corrupt("payload checksum mismatch")));
    }

    #[test]
    fn a_flipped_length_is_caught_by_the_header_sum() {
        let mut buf = framed(&[b"one", b"two"]);
        buf[0] ^= 0x40;
        assert_eq!(read_frame(&buf, 0), Frame::Bad("header checksum mismatch"));
        assert_eq!(scan(&buf).damage, Some(Damage::Corrupt("header checksum mismatch")));
    }
}
