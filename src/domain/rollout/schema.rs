//! The OpenAPI schemas of a rollout's members, stating the rules their checks keep: a
//! duration's form, a canary's count or distinct names, wave sizes, and a patch that
//! changes something.

use utoipa::openapi::{
    schema::{AllOfBuilder, ArrayBuilder, ObjectBuilder, OneOfBuilder, Type},
    Ref, RefOr, Schema,
};

use crate::domain::nullable_type;

/// Components of a number and a unit (`ms`, `s`, `m`, `h`, `d`), as in `90s` or `1h 30m`.
pub const SPAN_PATTERN: &str = r"^ *([0-9]{1,9} *(ms|s|m|h|d) *)+$";
/// The same, with at least one component that is not zero.
const POSITIVE_SPAN_PATTERN: &str = r"^(?=.*[1-9]) *([0-9]{1,9} *(ms|s|m|h|d) *)+$";

fn span(pattern: &str, description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(nullable_type(Type::String, true))
        .pattern(Some(pattern))
        .description(Some(description))
        .examples(["10m"])
        .build()
        .into()
}

pub fn span_schema() -> RefOr<Schema> {
    span(
        SPAN_PATTERN,
        "A duration: numbers with units ms, s, m, h or d, e.g. `90s`, `1h 30m`, `0s`.",
    )
}

pub fn positive_span_schema() -> RefOr<Schema> {
    span(
        POSITIVE_SPAN_PATTERN,
        "A duration longer than zero: numbers with units ms, s, m, h or d, e.g. `20m`.",
    )
}

fn positive_integer() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .maximum(Some(f64::from(u32::MAX)))
}

pub fn canary_schema() -> RefOr<Schema> {
    let names = ArrayBuilder::new()
        .items(Ref::from_schema_name("StateSlug"))
        .min_items(Some(1))
        .unique_items(true);
    let one_of = OneOfBuilder::new()
        .item(positive_integer())
        .item(names)
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "How many tenants go first (healthy ones first, then in name order), or which \
             states (distinct; each must be among the tenants the rollout changes). Default 1.",
        ))
        .build();
    RefOr::T(Schema::OneOf(one_of))
}

pub fn waves_schema() -> RefOr<Schema> {
    let size = OneOfBuilder::new().item(positive_integer()).item(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["rest"])),
    );
    ArrayBuilder::new()
        .schema_type(nullable_type(Type::Array, true))
        .items(size)
        .min_items(Some(1))
        .description(Some(
            "Every wave's size in order. The first wave is the canary: its size is the \
             canary's. `\"rest\"` may only be last and takes every tenant left; without it \
             the sizes must add up to at least the tenants the rollout changes. Default \
             `[canary, 5, 15, \"rest\"]`. Give this or `growth`, not both.",
        ))
        .examples([serde_json::json!([1, 5, 15, "rest"])])
        .build()
        .into()
}

pub fn patch_schema() -> RefOr<Schema> {
    let all_of = AllOfBuilder::new()
        .item(Ref::from_schema_name("SpecPatch"))
        .item(ObjectBuilder::new().min_properties(Some(1)))
        .description(Some(
            "A JSON merge patch of the tenant spec, as `PATCH /v1/tenants/{name}` takes in \
             `spec` (`null` members return to the fleet defaults); it must change something. \
             Each tenant's patched spec must keep the rules between members (Fargate's \
             cpu/memory pairs, min <= desired <= max).",
        ))
        .examples([serde_json::json!({"app_image": "humangov/app:1.6.0"})])
        .build();
    RefOr::T(Schema::AllOf(all_of))
}
