//! A [`Journal`] in a directory of segment files.
//!
//! Each segment is one file, `<base>.journal`, where `base` is the position of its first
//! record, written as 20 decimal digits so that names sort in order. A segment starts with a
//! 24-byte header and continues with framed records ([`super`] describes the framing):
//!
//! ```text
//! | magic "AGORAJNL" | version: u32 | header_sum: u32 | base: u64 |
//! ```
//!
//! Appends go to the newest segment. Once it holds `segment_bytes`, it is synced and closed, and
//! a new one begins, so that only the newest segment can ever end in a torn write. Pruning
//! deletes whole segments, oldest first, once every record in them is before the prune point
//! and the prune point itself is durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use agora_crypto::Domain;
use bytes::Bytes;

use super::{Damage, Journal, Lsn, TornTail, check_size, frame, framed_len, scan};
use crate::StoreError;

/// The first bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"AGORAJNL";
/// The segment format this build writes and reads.
pub const SEGMENT_VERSION: u32 = 1;
/// The bytes of a segment's header.
pub const SEGMENT_HEADER_BYTES: usize = 24;

const SEGMENT_SUFFIX: &str = ".journal";
/// Appended records are written (not synced) once this many bytes wait, bounding memory.
const PENDING_BYTES_MAX: usize = 1 << 20;

static SEGMENT: Domain = Domain::new("agora/journal-segment/v1");

/// How a [`FileJournal`] lays out its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileJournalConfig {
    /// A segment is closed, and a new one begun, once it holds this many bytes. A record
    /// larger than that gets a segment of its own.
    pub segment_bytes: u64,
}

impl Default for FileJournalConfig {
    /// 64 MiB segments.
    fn default() -> Self {
        Self { segment_bytes: 64 << 20 }
    }
}

#[derive(Debug)]
struct Segment {
    base: Lsn,
    path: PathBuf,
    /// Header and framed records, written or pending.
    bytes: u64,
    records: u64,
}

impl Segment {
    fn end(&self) -> Lsn {
        Lsn(self.base.0 + self.records)
    }
}

/// A journal in a directory of segment files; see the [module docs](self).
#[derive(Debug)]
pub struct FileJournal {
    dir: PathBuf,
    config: FileJournalConfig,
    /// Kept segments, oldest first; the last is the one appended to.
    segments: Vec<Segment>,
    file: File,
    /// Framed records appended and not yet written to `file`.
    pending: Vec<u8>,
    /// The position after the last synced record.
    synced: Lsn,
    /// The furthest prune point asked for; applied once it is durable.
    prune_to: Lsn,
    /// The record whose durability the prune waits for (at or after `prune_to`).
    prune_when: Lsn,
    /// A segment was created or deleted since the directory was last synced.
    dir_dirty: bool,
}

impl FileJournal {
    /// Opens the journal in `dir`, creating the directory and a first segment if there are none,
    /// and recovers it: every segment is read and checked, and a torn tail (a record a crash
    /// cut short, in the newest segment) is cut off and reported.
    ///
    /// Corruption anywhere else (a damaged record followed by valid ones, a damaged or missing
    /// segment before the newest, a file that is not a journal segment) is an error naming the
    /// file, never a shorter history.
    pub fn open(
        dir: impl AsRef<Path>,
        config: FileJournalConfig,
    ) -> Result<(Self, Option<TornTail>), StoreError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        let mut segments = list_segments(&dir)?;
        let mut torn = None;
        if segments.is_empty() {
            segments.push(create_segment(&dir, Lsn(0))?);
            sync_dir(&dir)?;
        } else {
            torn = recover_segments(&mut segments)?;
        }
        let active = segments.last().expect("at least one segment");
        let file =
            OpenOptions::new().append(true).open(&active.path).map_err(io_at(&active.path))?;
        let synced = active.end();
        let prune_to = segments[0].base;
        let journal = Self {
            dir,
            config,
            segments,
            file,
            pending: Vec::new(),
            synced,
            prune_to,
            prune_when: prune_to,
            dir_dirty: false,
        };
        Ok((journal, torn))
    }

    /// The directory the segments are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many segment files the journal keeps.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    fn active(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("at least one segment")
    }

    fn write_pending(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = &self.segments.last().expect("at least one segment").path;
        self.file.write_all(&self.pending).map_err(io_at(path))?;
        self.pending.clear();
        Ok(())
    }

    /// Closes the newest segment, durably, and begins the next: a segment before the newest is
    /// then always whole, so that only the newest can end torn.
    fn roll(&mut self) -> Result<(), StoreError> {
        self.write_pending()?;
        let path = self.active().path.clone();
        self.file.sync_data().map_err(io_at(&path))?;
        let base = self.active().end();
        let segment = create_segment(&self.dir, base)?;
        self.file =
            OpenOptions::new().append(true).open(&segment.path).map_err(io_at(&segment.path))?;
        self.segments.push(segment);
        self.dir_dirty = true;
        Ok(())
    }

    /// Deletes the oldest segments whose every record is before the durable prune point.
    fn apply_prune(&mut self) -> Result<(), StoreError> {
        // Records before the prune point go only once the record the prune waits for is
        // durable: if a crash lost a checkpoint, the records it summarised are still needed.
        let next = self.next_lsn();
        let durable =
            self.prune_when < self.synced || (self.synced == next && self.prune_when == next);
        if !durable {
            return Ok(());
        }
        let keep_from = self.prune_to;
        let dead = self.segments.windows(2).take_while(|pair| pair[1].base <= keep_from).count();
        for segment in self.segments.drain(..dead) {
            fs::remove_file(&segment.path).map_err(io_at(&segment.path))?;
            self.dir_dirty = true;
        }
        Ok(())
    }
}

impl Journal for FileJournal {
    fn append(&mut self, record: &[u8]) -> Result<Lsn, StoreError> {
        check_size(record)?;
        let framed = framed_len(record.len());
        let active = self.active();
        if active.records > 0 && active.bytes + framed > self.config.segment_bytes {
            self.roll()?;
        }
        frame(record, &mut self.pending);
        let active = self.active();
        active.bytes += framed;
        active.records += 1;
        let lsn = Lsn(active.end().0 - 1);
        if self.pending.len() >= PENDING_BYTES_MAX {
            self.write_pending()?;
        }
        Ok(lsn)
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.write_pending()?;
        let path = self.active().path.clone();
        self.file.sync_data().map_err(io_at(&path))?;
        self.synced = self.next_lsn();
        self.apply_prune()?;
        if self.dir_dirty {
            sync_dir(&self.dir)?;
            self.dir_dirty = false;
        }
        Ok(())
    }

    fn prune_once_durable(&mut self, keep_from: Lsn, durable_at: Lsn) -> Result<(), StoreError> {
        let next = self.next_lsn();
        self.prune_to = self.prune_to.max(keep_from.min(next));
        self.prune_when = self.prune_when.max(durable_at.max(keep_from).min(next));
        self.apply_prune()
    }

    fn next_lsn(&self) -> Lsn {
        self.segments.last().expect("at least one segment").end()
    }

    fn records(&mut self) -> Result<Vec<(Lsn, Bytes)>, StoreError> {
        let mut records = Vec::new();
        for segment in &self.segments {
            let contents = read_segment(segment)?;
            let body = contents.slice(SEGMENT_HEADER_BYTES..);
            let scanned = scan(&body);
            if scanned.damage.is_some() {
                return Err(corrupt(segment, &scanned, "a record changed after recovery"));
            }
            let lsns = (segment.base.0..).map(Lsn);
            records.extend(lsns.zip(scanned.records.iter().map(|&(s, e)| body.slice(s..e))));
        }
        // Appended records not yet written: read from memory, so that reading never writes.
        let pending = Bytes::copy_from_slice(&self.pending);
        let first_pending = self.segments[0].base.0 + records.len() as u64;
        let scanned = scan(&pending);
        let lsns = (first_pending..).map(Lsn);
        records.extend(lsns.zip(scanned.records.iter().map(|&(s, e)| pending.slice(s..e))));
        Ok(records)
    }

    fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|segment| segment.bytes).sum()
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|handle| handle.sync_all()).map_err(io_at(dir))
}

fn segment_path(dir: &Path, base: Lsn) -> PathBuf {
    dir.join(format!("{:020}{SEGMENT_SUFFIX}", base.0))
}

fn segment_header(base: Lsn) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    header[16..].copy_from_slice(&base.0.to_le_bytes());
    let sum = header_sum(&header);
    header[12..16].copy_from_slice(&sum.to_le_bytes());
    header
}

fn header_sum(header: &[u8; SEGMENT_HEADER_BYTES]) -> u32 {
    let mut covered = [0u8; 20];
    covered[..12].copy_from_slice(&header[..12]);
    covered[12..].copy_from_slice(&header[16..]);
    let digest = SEGMENT.hash(&covered);
    u32::from_le_bytes(digest.as_bytes()[..4].try_into().expect("4 bytes"))
}

fn create_segment(dir: &Path, base: Lsn) -> Result<Segment, StoreError> {
    let path = segment_path(dir, base);
    let mut file =
        OpenOptions::new().write(true).create_new(true).open(&path).map_err(io_at(&path))?;
    file.write_all(&segment_header(base)).map_err(io_at(&path))?;
    file.sync_data().map_err(io_at(&path))?;
    Ok(Segment { base, path, bytes: SEGMENT_HEADER_BYTES as u64, records: 0 })
}

/// The segment files in `dir`, by base, oldest first. Files with other names are left alone.
fn list_segments(dir: &Path) -> Result<Vec<Segment>, StoreError> {
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_at(dir))? {
        let entry = entry.map_err(io_at(dir))?;
        let name = entry.file_name();
        let Some(base) = name.to_str().and_then(parse_segment_name) else {
            continue;
        };
        segments.push(Segment { base, path: entry.path(), bytes: 0, records: 0 });
    }
    segments.sort_by_key(|segment| segment.base);
    Ok(segments)
}

fn parse_segment_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok().map(Lsn))
        .flatten()
}

fn read_segment(segment: &Segment) -> Result<Bytes, StoreError> {
    fs::read(&segment.path).map(Bytes::from).map_err(io_at(&segment.path))
}

/// Checks every segment in order and cuts a torn tail off the newest.
fn recover_segments(segments: &mut [Segment]) -> Result<Option<TornTail>, StoreError> {
    let last = segments.len() - 1;
    let mut torn = None;
    let mut expected: Option<Lsn> = None;
    for (index, segment) in segments.iter_mut().enumerate() {
        if let Some(expected) = expected.filter(|expected| *expected != segment.base) {
            return Err(StoreError::MissingRecords {
                path: segment.path.clone(),
                expected,
                found: segment.base,
            });
        }
        let contents = read_segment(segment)?;
        if contents.len() < SEGMENT_HEADER_BYTES && index == last {
            // A crash while the segment was being created: begin it again.
            let cut = contents.len() as u64;
            rewrite_header(segment)?;
            torn = Some(TornTail { lsn: segment.base, offset: 0, bytes_cut: cut });
            continue;
        }
        check_header(segment, &contents)?;
        let body = &contents[SEGMENT_HEADER_BYTES..];
        let scanned = scan(body);
        segment.records = scanned.records.len() as u64;
        segment.bytes = (SEGMENT_HEADER_BYTES + scanned.valid_len) as u64;
        match scanned.damage {
            None => {}
            Some(Damage::Torn) if index == last => {
                let cut = (body.len() - scanned.valid_len) as u64;
                truncate(segment)?;
                torn = Some(TornTail { lsn: segment.end(), offset: segment.bytes, bytes_cut: cut });
            }
            Some(Damage::Torn) => {
                return Err(corrupt(segment, &scanned, "a closed segment ends torn"));
            }
            Some(Damage::Corrupt(reason)) => return Err(corrupt(segment, &scanned, reason)),
        }
        expected = Some(segment.end());
    }
    Ok(torn)
}

fn check_header(segment: &Segment, contents: &[u8]) -> Result<(), StoreError> {
    let path = || segment.path.clone();
    let Some(header) = contents.get(..SEGMENT_HEADER_BYTES) else {
        return Err(StoreError::Corrupt {
            path: path(),
            offset: 0,
            lsn: segment.base,
            reason: "the segment header is cut short",
        });
    };
    let header: &[u8; SEGMENT_HEADER_BYTES] = header.try_into().expect("header length");
    if header[..8] != SEGMENT_MAGIC {
        return Err(StoreError::ForeignFormat {
            path: path(),
            expected: "an agora journal segment",
        });
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let stored_sum = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes"));
    let base = Lsn(u64::from_le_bytes(header[16..].try_into().expect("8 bytes")));
    let reason = if header_sum(header) != stored_sum {
        "segment header checksum mismatch"
    } else if version != SEGMENT_VERSION {
        return Err(StoreError::UnsupportedVersion {
            path: path(),
            found: version,
            supported: SEGMENT_VERSION,
        });
    } else if base != segment.base {
        "the segment header names another base than its file"
    } else {
        return Ok(());
    };
    Err(StoreError::Corrupt { path: path(), offset: 0, lsn: segment.base, reason })
}

fn corrupt(segment: &Segment, scanned: &super::Scanned, reason: &'static str) -> StoreError {
    StoreError::Corrupt {
        path: segment.path.clone(),
        offset: (SEGMENT_HEADER_BYTES + scanned.valid_len) as u64,
        lsn: Lsn(segment.base.0 + scanned.records.len() as u64),
        reason,
    }
}

fn truncate(segment: &Segment) -> Result<(), StoreError> {
    let file = OpenOptions::new().write(true).open(&segment.path).map_err(io_at(&segment.path))?;
    file.set_len(segment.bytes).map_err(io_at(&segment.path))?;
    file.sync_all().map_err(io_at(&segment.path))
}

fn rewrite_header(segment: &mut Segment) -> Result<(), StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&segment.path)
        .map_err(io_at(&segment.path))?;
    file.write_all(&segment_header(segment.base)).map_err(io_at(&segment.path))?;
    file.sync_all().map_err(io_at(&segment.path))?;
    segment.bytes = SEGMENT_HEADER_BYTES as u64;
    segment.records = 0;
    Ok(())
}
