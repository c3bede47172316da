//! How the model's standard-library fields look in JSON, for the OpenAPI document: serde writes a
//! `Duration` and a `SystemTime` as plain structs, and the model's types say so with
//! `#[schema(value_type = …)]`. A detail of serialization, kept beside the model that uses it.

use utoipa::ToSchema;

/// serde's form of a `Duration`.
#[derive(ToSchema)]
#[schema(as = Duration)]
#[expect(dead_code, reason = "it only describes a JSON form")]
pub(crate) struct DurationSchema {
    secs: u64,
    nanos: u32,
}

/// serde's form of a `SystemTime`: time since the Unix epoch.
#[derive(ToSchema)]
#[schema(as = SystemTime)]
#[expect(dead_code, reason = "it only describes a JSON form")]
pub(crate) struct TimeSchema {
    secs_since_epoch: u64,
    nanos_since_epoch: u32,
}
