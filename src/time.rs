//! Times as wssgate writes and reads them: RFC 3339 in UTC, whole seconds for
//! people and records, and a serde adapter so that typed records keep a
//! `SystemTime` while their JSON keeps the RFC 3339 string.

use std::time::SystemTime;

/// RFC 3339 with seconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// RFC 3339 with milliseconds, UTC: for records ordered by time where two
/// events may fall within one second.
pub fn rfc3339_millis(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parse an RFC 3339 time in UTC (`2027-01-15T08:00:00Z`, fractions allowed).
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, humantime::TimestampError> {
    humantime::parse_rfc3339(text.trim())
}

/// `#[serde(with = "crate::time::as_rfc3339")]` for a `SystemTime` field.
pub mod as_rfc3339 {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_whole_seconds() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert_eq!(rfc3339(t), "2027-01-15T08:00:00Z");
        assert_eq!(parse_rfc3339(&rfc3339(t)).unwrap(), t);
        assert!(parse_rfc3339("yesterday").is_err());
    }
}
