//! Types that can only hold valid values. Input is parsed into them at the edge; the rest
//! of the program trusts them.

pub mod image;
pub mod rollout;
pub mod spec;
pub mod state;
pub mod tenant;
pub mod text;
pub mod whole;

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{
    openapi::schema::{SchemaType, Type},
    ToSchema,
};

/// `kind`, or `[kind, "null"]` for a member that may be sent as `null`.
pub fn nullable_type(kind: Type, nullable: bool) -> SchemaType {
    if nullable {
        SchemaType::Array(vec![kind, Type::Null])
    } else {
        SchemaType::Type(kind)
    }
}

/// For a merge patch's `Option<Option<T>>` members: tells one sent as `null` (`Some(None)`)
/// from one left out (`None`, with `#[serde(default)]`).
pub fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A member that must be a JSON object. Serde's derive also reads a struct from an array
/// of its fields, which a schema's `object` does not allow.
pub fn object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    struct ObjectOnly<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectOnly<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(ObjectOnly(std::marker::PhantomData))
}

/// An optional member that must be a JSON object (or `null`) when sent.
pub fn optional_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    struct Inner<T>(T);
    impl<'de, T: Deserialize<'de>> Deserialize<'de> for Inner<T> {
        fn deserialize<D2: Deserializer<'de>>(d: D2) -> Result<Self, D2::Error> {
            object(d).map(Inner)
        }
    }
    Ok(Option::<Inner<T>>::deserialize(d)?.map(|i| i.0))
}

/// [`present`] for a member that must be a JSON object (or `null`).
pub fn present_object<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    optional_object(d).map(Some)
}

/// One problem with one input field, as reported in a validation problem's `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Where the problem is, as a dotted path into the request (e.g. `spec.cpu`).
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in one input, so a caller can fix them all at once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl ValidationErrors {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn into_result<T>(self, ok: impl FnOnce() -> T) -> Result<T, Self> {
        if self.0.is_empty() {
            Ok(ok())
        } else {
            Err(self)
        }
    }
}

impl std::fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for ValidationErrors {}
