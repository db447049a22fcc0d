//! What makes the OpenAPI document complete and exact: JSON answers documented as
//! `application/json`, per-operation error answers (each with its description and an exact
//! message as its example), nullable and date-time properties, and query and header parameters
//! that handlers read as text (so they choose the answer to a bad value) but that the document
//! shows with their real type and limits.

use std::borrow::Cow;
use std::marker::PhantomData;

use poem::http::StatusCode;
use poem::{IntoResponse, Request, RequestBody, Response};
use poem_openapi::payload::Payload;
use poem_openapi::registry::MetaParamIn;
use poem_openapi::registry::{
    MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::types::{
    ParseError, ParseFromJSON, ParseFromParameter, ParseResult, ToJSON, Type,
};
use poem_openapi::{ApiExtractor, ApiExtractorType, ApiResponse, ExtractParamOptions};
use serde_json::{Value, json};

use super::error::{
    ApiError, BODY_TIMEOUT, ErrorMessage, INTERNAL_ERROR, INVALID_JSON, UNAVAILABLE,
    ValidationFailure,
};
use crate::model::ACCOUNT_DISABLED_MESSAGE;
use crate::service::ServiceError;
use crate::store::StoreError;

/// The items of a `poem_openapi::types::Type` impl that are the same for every type whose raw
/// value is itself: required, one element.
macro_rules! raw_value_is_self {
    () => {
        const IS_REQUIRED: bool = true;
        type RawValueType = Self;
        type RawElementValueType = Self;

        fn as_raw_value(&self) -> Option<&Self::RawValueType> {
            Some(self)
        }

        fn raw_element_iter<'a>(
            &'a self,
        ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
            Box::new(self.as_raw_value().into_iter())
        }
    };
}
pub(super) use raw_value_is_self;

/// The documented media type of every JSON body (answers carry `; charset=utf-8`).
pub const JSON: &str = "application/json";

/// A JSON answer.
pub struct Json<T>(pub T);

impl<T: Type> Payload for Json<T> {
    const CONTENT_TYPE: &'static str = JSON;

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ToJSON> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        super::error::json_response(StatusCode::OK, &self.0.to_json().unwrap_or(Value::Null))
    }
}

/// One error answer an operation documents.
pub struct ErrorDoc {
    pub status: u16,
    /// When it is answered, with its exact messages.
    pub description: &'static str,
    /// An exact body.
    pub example: Value,
    /// The description of a `Retry-After` header it carries, if it does.
    pub retry_after: Option<&'static str>,
}

impl ErrorDoc {
    pub fn new(status: u16, description: &'static str, message: &str) -> Self {
        Self {
            status,
            description,
            example: json!({ "message": message }),
            retry_after: None,
        }
    }

    /// The same answer with a `Retry-After` header, described.
    pub fn with_retry_after(self, description: &'static str) -> Self {
        Self {
            retry_after: Some(description),
            ..self
        }
    }

    /// 503, on every operation: the database cannot take the request in time.
    pub fn unavailable() -> Self {
        Self::new(
            503,
            "The database cannot take the request in time (held by another program, a full \
             disk, unreachable): exactly `Service unavailable, please retry`. Nothing was \
             written; retry after `Retry-After` seconds.",
            UNAVAILABLE,
        )
        .with_retry_after("Seconds to wait before retrying.")
    }

    /// 408, on every operation that takes a body.
    pub fn body_timeout() -> Self {
        Self::new(
            408,
            "The body did not arrive within `server.body_timeout` (30 s by default) of the \
             headers: exactly `Request body not received in time`.",
            BODY_TIMEOUT,
        )
    }

    /// 401, on every operation that takes the Bearer key.
    pub fn unauthorized() -> Self {
        Self::new(
            401,
            "No valid API key. Exact messages: `Unauthorized` (no `Authorization` header), \
             `Invalid auth header format. Expected: 'Bearer [API_KEY]'` (not `Bearer <key>`; the \
             scheme is case-sensitive), `Invalid API key` (empty, unknown or revoked key).",
            super::INVALID_KEY,
        )
    }

    /// 403, on every operation that takes the Bearer key, for a disabled account.
    pub fn account_disabled() -> Self {
        Self::new(
            403,
            "An operator disabled the account (`pingpilot account disable`): exactly \
             `This account is disabled`, whatever the request.",
            ACCOUNT_DISABLED_MESSAGE,
        )
    }

    /// 500, on every operation.
    pub fn internal() -> Self {
        Self::new(
            500,
            "An unexpected failure, with no detail: exactly `Internal server error`.",
            INTERNAL_ERROR,
        )
    }

    /// 400 for a body that is not JSON.
    pub fn not_json() -> Self {
        Self::new(
            400,
            "The body is not JSON: exactly `Invalid JSON request body`.",
            INVALID_JSON,
        )
    }

    /// 400 for a malformed query parameter (the message names it).
    pub fn bad_parameter(description: &'static str, message: &str) -> Self {
        Self::new(400, description, message)
    }

    /// 413 for a body over the limit.
    pub fn too_large() -> Self {
        Self::new(
            413,
            "The body is larger than 64 KiB.",
            &super::error::too_large_message(),
        )
    }

    /// 415 for a body sent as something other than JSON.
    pub fn unsupported_media_type() -> Self {
        Self::new(
            415,
            "The body is sent with a `Content-Type` other than `application/json` (no \
             `Content-Type` at all is read as JSON).",
            &super::error::unsupported_media_type_message("text/plain"),
        )
    }

    /// 422 for a body that breaks the rules.
    pub fn invalid(description: &'static str, path: &str, message: &str) -> Self {
        let failure = ValidationFailure::new(vec![super::FieldError {
            path: path.into(),
            message: message.into(),
        }]);
        Self {
            status: 422,
            description,
            example: failure.to_json().unwrap_or(Value::Null),
            retry_after: None,
        }
    }

    /// The answers of an operation's JSON body that is not read (400, 413, 415) or breaks a
    /// rule (422, described by `invalid`, with the example violation `path`: `message`).
    pub fn body_errors(invalid: &'static str, path: &str, message: &str) -> Vec<Self> {
        vec![
            Self::not_json(),
            Self::too_large(),
            Self::unsupported_media_type(),
            Self::invalid(invalid, path, message),
        ]
    }

    /// 404 with its exact message.
    pub fn not_found(description: &'static str, message: &str) -> Self {
        Self::new(404, description, message)
    }
}

/// The error answers of one operation.
pub trait OperationErrors: Send + Sync + 'static {
    fn errors() -> Vec<ErrorDoc>;
}

/// An operation's failure: any [`ApiError`], documented as the statuses `O` lists.
pub struct Errors<O>(pub ApiError, PhantomData<fn() -> O>);

impl<O> From<ApiError> for Errors<O> {
    fn from(error: ApiError) -> Self {
        Self(error, PhantomData)
    }
}

impl<O> From<StoreError> for Errors<O> {
    fn from(error: StoreError) -> Self {
        Self(error.into(), PhantomData)
    }
}

impl<O> From<ServiceError> for Errors<O> {
    fn from(error: ServiceError) -> Self {
        Self(error.into(), PhantomData)
    }
}

impl<O> IntoResponse for Errors<O> {
    fn into_response(self) -> Response {
        self.0.into_response()
    }
}

impl<O> From<Errors<O>> for poem::Error {
    fn from(error: Errors<O>) -> Self {
        poem::Error::from_response(error.into_response())
    }
}

/// `allOf: [$ref]` with an example: a reference with an example of this very use.
fn with_example(schema: &str, example: Value) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        all_of: vec![MetaSchemaRef::Reference(schema.into())],
        example: Some(example),
        ..MetaSchema::ANY
    }))
}

/// An operation's documented errors plus those every operation of its kind may answer: 503
/// for all, 408 for those that take a body (which document 413), 403 for a disabled account
/// for those that take the key (which document 401; one with 403s of its own names it there).
/// In status order.
fn with_common_errors(mut docs: Vec<ErrorDoc>) -> Vec<ErrorDoc> {
    let takes_key = docs.iter().any(|doc| doc.status == 401);
    if takes_key && !docs.iter().any(|doc| doc.status == 403) {
        docs.push(ErrorDoc::account_disabled());
    }
    if docs.iter().any(|doc| doc.status == 413) {
        docs.push(ErrorDoc::body_timeout());
    }
    docs.push(ErrorDoc::unavailable());
    docs.sort_by_key(|doc| doc.status);
    docs
}

impl<O: OperationErrors> ApiResponse for Errors<O> {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: with_common_errors(O::errors())
                .into_iter()
                .map(|doc| {
                    let schema = if doc.status == 422 {
                        ValidationFailure::name()
                    } else {
                        ErrorMessage::name()
                    };
                    MetaResponse {
                        description: doc.description,
                        status: Some(doc.status),
                        status_range: None,
                        content: vec![MetaMediaType {
                            content_type: JSON,
                            schema: with_example(&schema, doc.example),
                        }],
                        headers: doc
                            .retry_after
                            .map(|description| MetaHeader {
                                name: "Retry-After".into(),
                                description: Some(description.into()),
                                // A 503 always says when to retry; a 429 only for the rate.
                                required: doc.status == 503,
                                deprecated: false,
                                schema: MetaSchemaRef::Inline(Box::new(
                                    MetaSchema::new_with_format("integer", "int64"),
                                )),
                            })
                            .into_iter()
                            .collect(),
                    }
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ErrorMessage::register(registry);
        ValidationFailure::register(registry);
    }
}

/// A schema no value matches: the value of `additionalProperties` for objects that accept no
/// other properties (the JSON Schema `false`, which poem-openapi cannot write; `oneOf` of two
/// schemas that both match everything is never satisfied).
pub fn no_other_properties() -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        description: Some("No other properties are accepted."),
        one_of: vec![
            MetaSchemaRef::Inline(Box::new(MetaSchema::ANY)),
            MetaSchemaRef::Inline(Box::new(MetaSchema::ANY)),
        ],
        ..MetaSchema::ANY
    }))
}

/// A `&'static str` built once (descriptions assembled from the linked providers).
pub fn built_once(
    cell: &'static std::sync::OnceLock<String>,
    build: impl FnOnce() -> String,
) -> &'static str {
    cell.get_or_init(build).as_str()
}

/// The documented schema of a text parameter.
pub trait ParamSchema: Send + Sync + 'static {
    fn schema_ref() -> MetaSchemaRef;

    fn register(_registry: &mut Registry) {}
}

/// A query or header parameter taken as text: the handler checks it and chooses the answer,
/// while the document shows the schema `S` describes.
pub struct Param<S>(pub String, PhantomData<fn() -> S>);

impl<S> Param<S> {
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl<S: ParamSchema> Type for Param<S> {
    raw_value_is_self!();

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        S::schema_ref()
    }

    fn register(registry: &mut Registry) {
        S::register(registry);
    }
}

impl<S: ParamSchema> ParseFromParameter for Param<S> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Self(value.to_string(), PhantomData))
    }
}

/// An optional header parameter read as raw bytes: a value that is not visible ASCII is kept
/// (lossily decoded) for the handler to reject, where poem-openapi's `Header` would drop it and
/// act as if the header were absent.
pub struct RawHeader<S>(pub Option<String>, PhantomData<fn() -> S>);

impl<'a, S: ParamSchema> ApiExtractor<'a> for RawHeader<S> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
    const PARAM_IS_REQUIRED: bool = false;
    type ParamType = Param<S>;
    type ParamRawType = Param<S>;

    fn register(registry: &mut Registry) {
        S::register(registry);
    }

    fn param_in() -> Option<MetaParamIn> {
        Some(MetaParamIn::Header)
    }

    fn param_schema_ref() -> Option<MetaSchemaRef> {
        Some(S::schema_ref())
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let value = request
            .headers()
            .get(param_opts.name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        Ok(Self(value, PhantomData))
    }
}

/// A value that is always present in an answer, `null` when unset.
#[derive(Debug, Clone, PartialEq)]
pub struct Nullable<T>(pub Option<T>);

impl<T> From<Option<T>> for Nullable<T> {
    fn from(value: Option<T>) -> Self {
        Self(value)
    }
}

impl<T: Type> Type for Nullable<T> {
    const IS_REQUIRED: bool = true;
    type RawValueType = T::RawValueType;
    type RawElementValueType = T::RawElementValueType;

    fn name() -> Cow<'static, str> {
        format!("Nullable<{}>", T::name()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        match T::schema_ref() {
            MetaSchemaRef::Inline(schema) => MetaSchemaRef::Inline(Box::new(MetaSchema {
                nullable: true,
                ..*schema
            })),
            reference => MetaSchemaRef::Inline(Box::new(MetaSchema {
                all_of: vec![reference],
                nullable: true,
                ..MetaSchema::ANY
            })),
        }
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref().and_then(Type::as_raw_value)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        match &self.0 {
            Some(value) => value.raw_element_iter(),
            None => Box::new(std::iter::empty()),
        }
    }
}

impl<T: ParseFromJSON> ParseFromJSON for Nullable<T> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            None | Some(Value::Null) => Ok(Self(None)),
            value => T::parse_from_json(value)
                .map(|v| Self(Some(v)))
                .map_err(ParseError::propagate),
        }
    }
}

impl<T: ToJSON> ToJSON for Nullable<T> {
    fn to_json(&self) -> Option<Value> {
        Some(
            self.0
                .as_ref()
                .and_then(ToJSON::to_json)
                .unwrap_or(Value::Null),
        )
    }
}

/// A point in time, RFC 3339 in UTC (`2026-01-31T09:00:00.000Z`).
#[derive(Debug, Clone, PartialEq)]
pub struct Timestamp(pub String);

impl Timestamp {
    pub fn from_millis(millis: crate::model::Millis) -> Self {
        Self(crate::model::format_time(millis))
    }
}

impl Type for Timestamp {
    raw_value_is_self!();

    fn name() -> Cow<'static, str> {
        "string_date-time".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "date-time")))
    }
}

impl ParseFromJSON for Timestamp {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(text)) => Ok(Self(text)),
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

impl ToJSON for Timestamp {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// An example time for documentation.
pub fn example_time() -> Timestamp {
    Timestamp("2026-01-31T09:00:00.000Z".into())
}

/// A channel, named by the id of a provider linked into this relay (`discord`, `telegram`, …):
/// the document's `ChannelId`, an enumeration of those ids.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelId(pub String);

impl Type for ChannelId {
    raw_value_is_self!();

    fn name() -> Cow<'static, str> {
        "ChannelId".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Reference("ChannelId".into())
    }

    fn register(registry: &mut Registry) {
        registry.create_schema::<Self, _>("ChannelId".into(), |_| MetaSchema {
            description: Some("A channel: the id of a provider linked into this relay."),
            enum_items: crate::provider::registered()
                .iter()
                .map(|p| Value::String(p.id.into()))
                .collect(),
            example: Some(Value::String("discord".into())),
            ..MetaSchema::new("string")
        });
    }
}

impl ParseFromJSON for ChannelId {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(text)) => Ok(Self(text)),
            other => Err(ParseError::expected_type(other.unwrap_or_default())),
        }
    }
}

impl ToJSON for ChannelId {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}
