//! The rules a request body's text properties follow, each said once: the OpenAPI document
//! states it (`schema`) and validation enforces it (`check`), with the messages made from the
//! same numbers.

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};

use super::error::FieldError;

/// Implements [`Type`] for a request body type whose schema `$schema` builds, registering
/// what it refers to in `$registry`. The type documents the body; requests are read as JSON and
/// checked by the type's own `validate`, from the same rules.
macro_rules! body_type {
    ($ty:ident, $name:literal, |$registry:ident| $schema:expr) => {
        impl poem_openapi::types::Type for $ty {
            $crate::api::documented::raw_value_is_self!();

            fn name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
                poem_openapi::registry::MetaSchemaRef::Reference($name.into())
            }

            fn register(registry: &mut poem_openapi::registry::Registry) {
                registry.create_schema::<Self, _>($name.into(), |$registry| {
                    poem_openapi::registry::MetaSchema {
                        title: Some($name.into()),
                        ..$schema
                    }
                });
            }
        }
    };
}

pub(super) use body_type;

/// A text property: its length in characters and, optionally, the characters it may hold.
pub struct TextRule {
    pub min_chars: usize,
    pub max_chars: usize,
    pub chars: Option<CharRule>,
}

/// The characters a text may hold: the pattern the document shows and the test that enforces
/// it (the same set).
pub struct CharRule {
    pub pattern: &'static str,
    pub allows: fn(&str) -> bool,
}

/// What is wrong with a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextViolation {
    Length,
    Chars,
}

impl TextRule {
    /// A text of any characters, up to `max_chars`.
    pub const fn at_most(max_chars: usize) -> Self {
        Self {
            min_chars: 0,
            max_chars,
            chars: None,
        }
    }

    /// The first rule `text` breaks: its length, then its characters.
    pub fn check(&self, text: &str) -> Result<(), TextViolation> {
        let len = text.chars().count();
        if len < self.min_chars || len > self.max_chars {
            return Err(TextViolation::Length);
        }
        match &self.chars {
            Some(chars) if !(chars.allows)(text) => Err(TextViolation::Chars),
            _ => Ok(()),
        }
    }

    /// `must be 1 to 64 characters long`, or `must be at most 4096 characters long`.
    pub fn length_message(&self) -> String {
        if self.min_chars == 0 {
            format!("must be at most {} characters long", self.max_chars)
        } else {
            format!(
                "must be {} to {} characters long",
                self.min_chars, self.max_chars
            )
        }
    }

    /// The property's schema: a string with these limits.
    pub fn schema(&self, description: &'static str) -> MetaSchema {
        MetaSchema {
            description: Some(description),
            min_length: (self.min_chars > 0).then_some(self.min_chars),
            max_length: Some(self.max_chars),
            pattern: self.chars.as_ref().map(|chars| chars.pattern.to_string()),
            ..MetaSchema::new("string")
        }
    }
}

/// A schema that also accepts `null`.
pub fn nullable(schema: MetaSchema) -> MetaSchema {
    MetaSchema {
        nullable: true,
        ..schema
    }
}

pub fn inline(schema: MetaSchema) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(schema))
}

pub fn violation(path: impl Into<String>, message: impl Into<String>) -> FieldError {
    FieldError {
        path: path.into(),
        message: message.into(),
    }
}

pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// A body's properties, with a violation for each one outside `allowed` (in the order sent);
/// a body that is not an object is the one violation.
pub fn body_object<'a>(
    body: &'a serde_json::Value,
    allowed: &[&str],
    unknown: &str,
) -> Result<(&'a JsonObject, Vec<FieldError>), Vec<FieldError>> {
    let Some(object) = body.as_object() else {
        return Err(vec![violation("", "the body must be a JSON object")]);
    };
    let errors = object
        .keys()
        .filter(|key| !allowed.contains(&key.as_str()))
        .map(|key| violation(key.as_str(), unknown))
        .collect();
    Ok((object, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: TextRule = TextRule {
        min_chars: 1,
        max_chars: 3,
        chars: Some(CharRule {
            pattern: "^[a-z]{1,3}$",
            allows: |text| text.chars().all(|c| c.is_ascii_lowercase()),
        }),
    };

    #[test]
    fn length_comes_before_characters() {
        assert_eq!(NAME.check("abc"), Ok(()));
        assert_eq!(NAME.check(""), Err(TextViolation::Length));
        assert_eq!(NAME.check("ABCD"), Err(TextViolation::Length));
        assert_eq!(NAME.check("A"), Err(TextViolation::Chars));
        assert_eq!(NAME.check("ééé"), Err(TextViolation::Chars));
    }

    #[test]
    fn messages_and_schema_say_the_same_numbers() {
        assert_eq!(NAME.length_message(), "must be 1 to 3 characters long");
        assert_eq!(
            TextRule::at_most(9).length_message(),
            "must be at most 9 characters long"
        );
        let schema = NAME.schema("A name.");
        assert_eq!((schema.min_length, schema.max_length), (Some(1), Some(3)));
        assert_eq!(schema.pattern.as_deref(), Some("^[a-z]{1,3}$"));
        assert_eq!(TextRule::at_most(9).schema("x").min_length, None);
    }
}
