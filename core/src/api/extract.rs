//! Request extractors that never fail on their own: the handler decides what to answer, so the
//! documented check order (401, then 403, 429, then body errors) holds.

use std::marker::PhantomData;

use bytes::BytesMut;
use http_body_util::BodyExt;
use poem::{Request, RequestBody};
use poem_openapi::registry::{
    MetaMediaType, MetaRequest, MetaSchemaRef, MetaSecurityScheme, Registry,
};
use poem_openapi::types::Type;
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use serde_json::Value;

use super::error::{ApiError, INVALID_JSON, too_large_message, unsupported_media_type_message};
use crate::server::BodyFailure;

pub const SECURITY_SCHEME: &str = "bearerAuth";
/// Largest request body accepted.
pub const BODY_LIMIT: usize = crate::server::MAX_BODY_BYTES;

/// What the `Authorization` header held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bearer {
    Missing,
    /// Present but not `Bearer <key>`.
    Malformed,
    /// The key, possibly empty.
    Key(String),
}

impl Bearer {
    fn parse(header: Option<&[u8]>) -> Self {
        let Some(header) = header else {
            return Self::Missing;
        };
        let Ok(header) = std::str::from_utf8(header) else {
            return Self::Malformed;
        };
        // Servers trim trailing whitespace, so a client's `Bearer ` arrives as `Bearer`: an
        // empty key, not a malformed header.
        if header == "Bearer" {
            return Self::Key(String::new());
        }
        match header.strip_prefix("Bearer ") {
            Some(key) => Self::Key(key.trim().to_string()),
            None => Self::Malformed,
        }
    }
}

impl<'a> ApiExtractor<'a> for Bearer {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            SECURITY_SCHEME,
            MetaSecurityScheme {
                ty: "http",
                description: Some("An API key, sent as `Authorization: Bearer pk_...`."),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: Some("API key"),
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SECURITY_SCHEME]
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let header = request
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .map(|value| value.as_bytes());
        Ok(Self::parse(header))
    }
}

/// A JSON request body documented as `T`, read only when the handler asks for it: after the
/// key is checked, so a request with a bad key is answered from its headers alone, whatever
/// body it declares. Read raw (at most [`BODY_LIMIT`] bytes) so the handler chooses when to
/// report 415, 413 and 400, and validates it into 422s itself. A body that is not `REQUIRED`
/// may be left out: an empty one reads as `None`.
pub struct JsonBody<T, const REQUIRED: bool = true> {
    /// The content type, when it is not JSON.
    unsupported: Option<String>,
    /// The `Content-Length`, when given.
    declared: Option<u64>,
    body: Option<poem::Body>,
    _documented_as: PhantomData<fn() -> T>,
}

/// A JSON body a request may leave out (see [`JsonBody`]).
pub type OptionalJsonBody<T> = JsonBody<T, false>;

#[derive(Debug, Clone)]
enum BodyError {
    UnsupportedMediaType(String),
    TooLarge,
    NotJson,
    TimedOut,
    Unreadable,
}

impl From<BodyError> for ApiError {
    fn from(err: BodyError) -> Self {
        match err {
            BodyError::UnsupportedMediaType(ct) => {
                ApiError::UnsupportedMediaType(poem_openapi::payload::Json(
                    super::ErrorMessage::new(unsupported_media_type_message(&ct)),
                ))
            }
            BodyError::TooLarge => ApiError::PayloadTooLarge(poem_openapi::payload::Json(
                super::ErrorMessage::new(too_large_message()),
            )),
            BodyError::TimedOut => ApiError::request_timeout(),
            BodyError::NotJson | BodyError::Unreadable => ApiError::bad_request(INVALID_JSON),
        }
    }
}

impl<T> JsonBody<T> {
    /// Reads the body as JSON, or the documented 415/413/400 (or 408 when it does not arrive
    /// within `server.body_timeout`).
    pub async fn value(self) -> Result<Value, ApiError> {
        // Only a body that may be left out reads as `None`.
        Ok(self.read().await?.ok_or(BodyError::NotJson)?)
    }
}

impl<T> OptionalJsonBody<T> {
    /// Reads the body as JSON, `None` when it is empty, or the errors of [`JsonBody::value`].
    pub async fn value_if_sent(self) -> Result<Option<Value>, ApiError> {
        Ok(self.read().await?)
    }
}

impl<T, const REQUIRED: bool> JsonBody<T, REQUIRED> {
    /// The body's JSON; `None` only for an empty body that may be left out.
    async fn read(self) -> Result<Option<Value>, BodyError> {
        // A body of another type is refused unread, unless it may be left out and could be
        // empty (no length declared): then it is read first, as an empty one is no body at all.
        if let Some(content_type) = &self.unsupported
            && (REQUIRED || self.declared.is_some_and(|length| length > 0))
        {
            return Err(BodyError::UnsupportedMediaType(content_type.clone()));
        }
        let bytes = read_limited(self.body, self.declared).await?;
        if bytes.is_empty() && !REQUIRED {
            return Ok(None);
        }
        if let Some(content_type) = self.unsupported {
            return Err(BodyError::UnsupportedMediaType(content_type));
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| BodyError::NotJson)
    }
}

/// The body's bytes, at most [`BODY_LIMIT`]: a body declared too large is refused unread; one
/// declared in size is read into a buffer of that size (the server cuts off any byte beyond
/// it).
async fn read_limited(
    body: Option<poem::Body>,
    declared: Option<u64>,
) -> Result<BytesMut, BodyError> {
    let declared = declared.unwrap_or(0);
    if declared > BODY_LIMIT as u64 {
        return Err(BodyError::TooLarge);
    }
    let mut body = BoxBody::from(body.ok_or(BodyError::Unreadable)?);
    let mut bytes = BytesMut::with_capacity(declared as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|err| match crate::server::body_failure(&err) {
            Some(BodyFailure::TooLarge) => BodyError::TooLarge,
            Some(BodyFailure::TimedOut) => BodyError::TimedOut,
            None => BodyError::Unreadable,
        })?;
        if let Some(data) = frame.data_ref() {
            if bytes.len() + data.len() > BODY_LIMIT {
                return Err(BodyError::TooLarge);
            }
            bytes.extend_from_slice(data);
        }
    }
    Ok(bytes)
}

/// The body type poem's requests carry.
type BoxBody = http_body_util::combinators::BoxBody<bytes::Bytes, std::io::Error>;

fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

impl<'a, T: Type, const REQUIRED: bool> ApiExtractor<'a> for JsonBody<T, REQUIRED> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    /// Every body of this API rejects properties it does not list: the document says so with
    /// `additionalProperties`, so clients and fuzzers do not send any.
    fn register(registry: &mut Registry) {
        T::register(registry);
        if let MetaSchemaRef::Reference(name) = T::schema_ref()
            && let Some(schema) = registry.schemas.get_mut(&name)
            && schema.additional_properties.is_none()
        {
            schema.additional_properties = Some(Box::new(super::documented::no_other_properties()));
        }
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: "application/json",
                schema: T::schema_ref(),
            }],
            required: REQUIRED,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let unsupported = request
            .content_type()
            .filter(|content_type| !is_json_content_type(content_type))
            .map(str::to_string);
        let declared = request
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok()?.parse().ok());
        Ok(Self {
            unsupported,
            declared,
            body: body.take().ok(),
            _documented_as: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header_cases() {
        assert_eq!(Bearer::parse(None), Bearer::Missing);
        assert_eq!(Bearer::parse(Some(b"Basic x")), Bearer::Malformed);
        assert_eq!(Bearer::parse(Some(b"bearer pk_x")), Bearer::Malformed);
        assert_eq!(Bearer::parse(Some(b"Token pk_x")), Bearer::Malformed);
        assert_eq!(Bearer::parse(Some(b"Bearer")), Bearer::Key(String::new()));
        assert_eq!(
            Bearer::parse(Some(b"Bearer   ")),
            Bearer::Key(String::new())
        );
        assert_eq!(
            Bearer::parse(Some(b"Bearer pk_x")),
            Bearer::Key("pk_x".into())
        );
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/x-www-form-urlencoded"));
    }
}
