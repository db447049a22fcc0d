//! Ids that carry their kind: `acc_`, `evt_` or `key_` followed by a ULID (which sorts by
//! creation time). One type per kind, so an event id cannot be passed where an account id is
//! expected; stored, serialized and shown as the text itself.

use std::fmt;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id, later ones sorting after earlier ones.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, ulid::Ulid::new()))
            }

            /// An id as received (a path segment, a command-line argument): `None` unless it
            /// has this kind's prefix.
            pub fn parse(text: &str) -> Option<Self> {
                text.starts_with($prefix).then(|| Self(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        /// Tests name ids by hand (`"acc_1".into()`), prefixed or not.
        #[cfg(test)]
        impl From<&str> for $name {
            fn from(text: &str) -> Self {
                Self(text.to_owned())
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<IsNull, BoxDynError> {
                self.0.encode_by_ref(buf)
            }
        }

        impl sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> sqlx::postgres::PgTypeInfo {
                <String as sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        /// For the SQLite writer's own statements (rusqlite).
        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                String::column_result(value).map(Self)
            }
        }

        /// Rows are trusted: what was stored as this kind of id is read back as one.
        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            String: sqlx::Decode<'r, DB>,
        {
            fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
                Ok(Self(String::decode(value)?))
            }
        }
    };
}

prefixed_id!(
    /// An account: `acc_` + ULID.
    AccountId,
    "acc_"
);
prefixed_id!(
    /// An event: `evt_` + ULID.
    EventId,
    "evt_"
);
prefixed_id!(
    /// An API key (not the key itself, which is never stored): `key_` + ULID.
    KeyId,
    "key_"
);

impl EventId {
    /// A new id for an event created at `at` (Unix milliseconds): it sorts by that time.
    pub fn generate_at(at: super::Millis) -> Self {
        let millis = u64::try_from(at).unwrap_or(0);
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis);
        Self(format!(
            "{}{}",
            Self::PREFIX,
            ulid::Ulid::from_datetime(time)
        ))
    }

    /// The lowest id an event created at `at` (Unix milliseconds) can have: every event created
    /// earlier sorts before it.
    pub fn first_at(at: super::Millis) -> Self {
        let millis = u64::try_from(at).unwrap_or(0);
        Self(format!(
            "{}{}",
            Self::PREFIX,
            ulid::Ulid::from_parts(millis, 0)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_prefix_and_sort_by_creation() {
        let first = EventId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = EventId::generate();
        assert!(first.starts_with("evt_"));
        assert_eq!(first.len(), 4 + 26);
        assert!(first < second);
        let at = crate::model::now_millis();
        assert!(EventId::first_at(at - 1) < EventId::generate());
        assert!(EventId::generate() < EventId::first_at(at + 10));
        let old = EventId::generate_at(at - 86_400_000);
        assert!(EventId::first_at(at - 86_400_000) <= old && old < EventId::first_at(at - 1));
        assert!(AccountId::generate().starts_with(AccountId::PREFIX));
        assert!(KeyId::generate().starts_with("key_"));
    }

    #[test]
    fn parsing_checks_the_kind() {
        assert_eq!(
            EventId::parse("evt_1").map(String::from).as_deref(),
            Some("evt_1")
        );
        assert!(EventId::parse("acc_1").is_none());
        assert!(AccountId::parse("evt_1").is_none());
        assert!(KeyId::parse("").is_none());
    }

    #[test]
    fn serializes_as_the_text() {
        let id = AccountId::parse("acc_01ABC").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"acc_01ABC\"");
        assert_eq!(
            serde_json::from_str::<AccountId>("\"acc_01ABC\"").unwrap(),
            id
        );
    }
}
