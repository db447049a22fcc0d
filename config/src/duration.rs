//! Durations written like `500ms`, `30s`, `10m`, `24h` (or a plain number of seconds).

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSetting(Duration);

impl DurationSetting {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    pub fn get(self) -> Duration {
        self.0
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a duration like 500ms, 30s, 10m or 24h"))?;
        let millis = match unit.trim() {
            "ms" => Some(number),
            "" | "s" => number.checked_mul(1000),
            "m" => number.checked_mul(60_000),
            "h" => number.checked_mul(3_600_000),
            "d" => number.checked_mul(86_400_000),
            _ => {
                return Err(format!(
                    "{text:?} has an unknown unit; use ms, s, m, h or d"
                ));
            }
        };
        millis
            .map(Self::from_millis)
            .ok_or_else(|| format!("{text:?} is too long a duration"))
    }
}

impl fmt::Display for DurationSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0.as_millis();
        let units = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1000, "s"),
        ];
        for (size, unit) in units {
            if millis >= size && millis.is_multiple_of(size) {
                return write!(f, "{}{unit}", millis / size);
            }
        }
        write!(f, "{millis}ms")
    }
}

impl Serialize for DurationSetting {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DurationSetting {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = DurationSetting;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration like 500ms, 30s, 10m or 24h")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                DurationSetting::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(DurationSetting::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(DurationSetting::from_secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
        }
        deserializer.deserialize_any(DurationVisitor)
    }
}

impl JsonSchema for DurationSetting {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(ms|s|m|h|d)?$",
            "description": "A duration like 500ms, 30s, 10m, 24h"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(
            DurationSetting::parse("500ms").unwrap().get(),
            Duration::from_millis(500)
        );
        assert_eq!(
            DurationSetting::parse("30s").unwrap().get(),
            Duration::from_secs(30)
        );
        assert_eq!(
            DurationSetting::parse("10m").unwrap().get(),
            Duration::from_secs(600)
        );
        assert_eq!(
            DurationSetting::parse("24h").unwrap().get(),
            Duration::from_secs(86_400)
        );
        assert_eq!(
            DurationSetting::parse("7").unwrap().get(),
            Duration::from_secs(7)
        );
        assert!(DurationSetting::parse("soon").is_err());
        assert!(DurationSetting::parse("5y").is_err());
        assert!(DurationSetting::parse("").is_err());
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        assert_eq!(DurationSetting::from_secs(600).to_string(), "10m");
        assert_eq!(DurationSetting::from_millis(1500).to_string(), "1500ms");
        assert_eq!(DurationSetting::from_secs(86_400).to_string(), "1d");
    }
}
