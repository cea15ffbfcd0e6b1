//! Byte sizes written as integers or as human sizes (`"512MiB"`, `"1 GiB"`).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer, Visitor};

const KIB: u64 = 1024;
const MIB: u64 = KIB * 1024;
const GIB: u64 = MIB * 1024;
const TIB: u64 = GIB * 1024;

/// The units accepted after a number, for error messages and docs.
pub const SIZE_UNITS: &str = "B, KiB, MiB, GiB, TiB, kB, MB, GB or TB";

/// A number of bytes.
///
/// In TOML it is either an integer (bytes) or a string: a whole number, an
/// optional space and a unit. Binary units (`KiB`, `MiB`, `GiB`, `TiB`) are
/// powers of 1024; decimal units (`kB`, `MB`, `GB`, `TB`) are powers of 1000, as
/// their SI names say. Units are matched without regard to case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

impl ByteSize {
    /// `n` bytes.
    pub const fn b(n: u64) -> Self {
        Self(n)
    }

    /// `n` KiB (saturating).
    pub const fn kib(n: u64) -> Self {
        Self(n.saturating_mul(KIB))
    }

    /// `n` MiB (saturating).
    pub const fn mib(n: u64) -> Self {
        Self(n.saturating_mul(MIB))
    }

    /// `n` GiB (saturating).
    pub const fn gib(n: u64) -> Self {
        Self(n.saturating_mul(GIB))
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ByteSize {
    /// The largest binary unit that divides the size exactly: `8 MiB`,
    /// `1536 KiB`, `1000 B`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, name) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
            if n >= unit && n % unit == 0 {
                return write!(f, "{} {name}", n / unit);
            }
        }
        write!(f, "{n} B")
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number = number.replace('_', "");
        if number.is_empty() {
            return Err(format!(
                "invalid size {s:?} (write a whole number with a unit: {SIZE_UNITS})"
            ));
        }
        let factor = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kib" => KIB,
            "mib" => MIB,
            "gib" => GIB,
            "tib" => TIB,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => {
                return Err(format!(
                    "invalid size {s:?}: unknown unit {:?} (use {SIZE_UNITS})",
                    unit.trim()
                ));
            }
        };
        number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .map(ByteSize)
            .ok_or_else(|| format!("invalid size {s:?}: too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SizeVisitor)
    }
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = ByteSize;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size: an integer number of bytes or a string such as \"512MiB\"")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
        Ok(ByteSize(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
        u64::try_from(v)
            .map(ByteSize)
            .map_err(|_| E::custom(format!("invalid size {v}: must not be negative")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
        v.parse().map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_human_sizes() {
        assert_eq!("512MiB".parse::<ByteSize>(), Ok(ByteSize::mib(512)));
        assert_eq!("1 GiB".parse::<ByteSize>(), Ok(ByteSize::gib(1)));
        assert_eq!("8mib".parse::<ByteSize>(), Ok(ByteSize::mib(8)));
        assert_eq!("2MB".parse::<ByteSize>(), Ok(ByteSize::b(2_000_000)));
        assert_eq!("4096".parse::<ByteSize>(), Ok(ByteSize::b(4096)));
        assert_eq!("1_024 B".parse::<ByteSize>(), Ok(ByteSize::kib(1)));
        assert!(
            "12XB"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("unknown unit \"XB\"")
        );
        assert!("MiB".parse::<ByteSize>().is_err());
        assert!("1.5GiB".parse::<ByteSize>().is_err());
        assert!(
            "99999999999 TiB"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        assert_eq!(ByteSize::mib(8).to_string(), "8 MiB");
        assert_eq!(ByteSize::kib(1536).to_string(), "1536 KiB");
        assert_eq!(ByteSize::b(1000).to_string(), "1000 B");
        assert_eq!(ByteSize::b(0).to_string(), "0 B");
    }
}
