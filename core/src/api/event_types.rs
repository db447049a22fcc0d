//! The types an event is shown with, both where it is sent (intake) and read back (events).

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{Example, ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::{Value, json};

use super::documented::raw_value_is_self;
use super::rules::TextRule;

/// At most this many fields per event.
pub const MAX_FIELDS: usize = 25;
/// A field's key.
pub const FIELD_KEY: TextRule = TextRule {
    min_chars: 1,
    max_chars: 256,
    chars: None,
};
/// A field's value, when it is text.
pub const FIELD_TEXT: TextRule = TextRule::at_most(1024);

/// An event's fields: a JSON object that keeps the order in which they were sent.
#[derive(Debug, Clone, Default)]
pub struct EventFields(pub serde_json::Map<String, Value>);

impl Example for EventFields {
    fn example() -> Self {
        Self(
            json!({"plan": "pro", "amount": 99.99, "recurring": true})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
    }
}

impl Type for EventFields {
    raw_value_is_self!();

    fn name() -> Cow<'static, str> {
        "EventFields".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            description: Some(
                "Key/value pairs in the order sent: at most 25, keys 1–256 characters, values \
                 text (up to 1024 characters), numbers or booleans.",
            ),
            additional_properties: Some(Box::new(FieldValue::schema_ref())),
            max_properties: Some(MAX_FIELDS),
            example: Self::example().to_json(),
            ..MetaSchema::new("object")
        }))
    }

    fn register(registry: &mut Registry) {
        FieldValue::register(registry);
    }
}

impl ToJSON for EventFields {
    fn to_json(&self) -> Option<Value> {
        Some(Value::Object(self.0.clone()))
    }
}

impl ParseFromJSON for EventFields {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::Object(map)) => Ok(Self(map)),
            None | Some(Value::Null) => Ok(Self(Default::default())),
            Some(other) => Err(ParseError::expected_type(other)),
        }
    }
}

/// A field value: text (up to 1024 characters), a number or a boolean.
pub struct FieldValue;

impl Type for FieldValue {
    raw_value_is_self!();

    fn name() -> Cow<'static, str> {
        "FieldValue".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference(Self::name().into_owned())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>(Self::name().into_owned(), |_| MetaSchema {
            description: Some(
                "A field value: text (up to 1024 characters), a number or a boolean.",
            ),
            one_of: vec![
                MetaSchemaRef::Inline(Box::new(MetaSchema {
                    max_length: Some(FIELD_TEXT.max_chars),
                    ..MetaSchema::new("string")
                })),
                MetaSchemaRef::Inline(Box::new(MetaSchema::new("number"))),
                MetaSchemaRef::Inline(Box::new(MetaSchema::new("boolean"))),
            ],
            example: Some(json!("pro")),
            ..MetaSchema::ANY
        });
    }
}
