//! Identifier and counter newtypes, each with an explicit integer width.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident($int:ty), $label:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $int);

        impl $name {
            /// The value as its integer.
            pub const fn get(self) -> $int {
                self.0
            }

            /// The next value, or `None` at the top of the range.
            pub const fn checked_next(self) -> Option<Self> {
                match self.0.checked_add(1) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($label, "{}"), self.0)
            }
        }

        impl From<$int> for $name {
            fn from(v: $int) -> Self {
                Self(v)
            }
        }

        impl From<$name> for $int {
            fn from(v: $name) -> Self {
                v.0
            }
        }
    };
}

id!(
    /// A committee member, by its position in the [`Committee`](crate::Committee).
    NodeId(u16),
    "n"
);
id!(
    /// A Streamlet epoch. Epoch 0 belongs to genesis; the first real epoch is 1.
    Epoch(u64),
    "e"
);
id!(
    /// A PBFT view; the primary of view `v` is replica `v mod n`.
    View(u64),
    "v"
);
id!(
    /// The round a block or vote belongs to: the epoch in Streamlet, the view in PBFT.
    Round(u64),
    "r"
);
id!(
    /// A block's distance from genesis (genesis is height 0).
    Height(u64),
    "h"
);
id!(
    /// A PBFT sequence number.
    SeqNo(u64),
    "s"
);
id!(
    /// A trading account.
    AccountId(u64),
    "acct"
);

/// Counters that are stepped and compared as distances: `counter + k` and `counter - k` move it
/// by `k`, and `a - b` is how far `a` is past `b`. Like integer arithmetic they panic on overflow
/// in debug builds, so callers keep values in range (PBFT bounds both by its log window).
macro_rules! counter_arithmetic {
    ($($name:ident),*) => {$(
        impl std::ops::Add<u64> for $name {
            type Output = $name;
            fn add(self, k: u64) -> $name {
                $name(self.0 + k)
            }
        }

        impl std::ops::AddAssign<u64> for $name {
            fn add_assign(&mut self, k: u64) {
                self.0 += k;
            }
        }

        impl std::ops::Sub<u64> for $name {
            type Output = $name;
            fn sub(self, k: u64) -> $name {
                $name(self.0 - k)
            }
        }

        impl std::ops::Sub for $name {
            type Output = u64;
            fn sub(self, earlier: $name) -> u64 {
                self.0 - earlier.0
            }
        }
    )*};
}

counter_arithmetic!(SeqNo, View);

impl NodeId {
    /// The member position as an index.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl From<Epoch> for Round {
    fn from(e: Epoch) -> Self {
        Round(e.0)
    }
}

impl From<View> for Round {
    fn from(v: View) -> Self {
        Round(v.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_debug_and_next() {
        assert_eq!(NodeId(3).to_string(), "3");
        assert_eq!(format!("{:?}", Epoch(5)), "e5");
        assert_eq!(Height(1).checked_next(), Some(Height(2)));
        assert_eq!(SeqNo(u64::MAX).checked_next(), None);
        assert_eq!(Round::from(View(9)), Round(9));
        assert_eq!(NodeId(7).index(), 7);
        assert_eq!(serde_json::to_string(&AccountId(12)).unwrap(), "12");
    }
}
