//! The one error an engine's constructor returns.

/// A configuration an engine cannot run with, named by its field and value, with the bound the
/// value broke. Engines check their configuration when they are built, so a bad value is a typed
/// error at start-up rather than a panic (or a silent stall) later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value}: {requirement}")]
pub struct ConfigError {
    /// The configuration field, as the engine's config struct names it.
    pub field: &'static str,
    /// The value it had.
    pub value: String,
    /// What the engine needs of it.
    pub requirement: &'static str,
}

impl ConfigError {
    /// `Err` naming `field` unless `ok`.
    pub fn check(
        ok: bool,
        field: &'static str,
        value: impl ToString,
        requirement: &'static str,
    ) -> Result<(), ConfigError> {
        if ok { Ok(()) } else { Err(ConfigError { field, value: value.to_string(), requirement }) }
    }
}

impl ConfigError {
    /// `Err` naming `me` unless it is a member of `committee`.
    pub fn member(
        committee: &agora_types::Committee,
        me: agora_types::NodeId,
    ) -> Result<(), ConfigError> {
        ConfigError::check(me.index() < committee.n(), "me", me.0, "not a member of the committee")
    }
}

/// The longest duration, in nanoseconds, an engine accepts for Δ or a timeout: one day. Longer
/// values would only ever stall a run, and bounding them keeps every timer computation far from
/// overflow.
pub const DURATION_MAX_NS: u64 = 86_400 * 1_000_000_000;
