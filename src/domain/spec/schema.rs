//! The OpenAPI schemas of the spec's three forms, built from the tables and limits the
//! checks in this module use. What JSON Schema can say is said by keywords; the rules
//! between fields (Fargate's cpu/memory pairs, `min <= desired <= max`, the size of the
//! whole environment) are spelled out in the description, from the same tables.

use serde_json::{json, Value};
use utoipa::{
    openapi::{
        extensions::Extensions,
        schema::{AdditionalProperties, Object, ObjectBuilder, Type},
        RefOr, Schema,
    },
    PartialSchema, ToSchema,
};

use super::{
    fargate_memory_for, SpecDoc, SpecInput, SpecLimits, SpecPatch, FARGATE_CPUS, MAX_ENV_NAME_LEN,
    MAX_ENV_TOTAL_BYTES, MAX_ENV_VALUE_LEN, MAX_ENV_VARS, MAX_TASK_COUNT_CEILING, RESERVED_ENV,
};
use crate::domain::{image, nullable_type};

/// Which of the spec's forms a schema describes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// As served and stored: every member present.
    Doc,
    /// As sent with a create: any member may be left out or `null`.
    Input,
    /// A merge patch: as `Input`, and `env` members may be `null` (removed).
    Patch,
}

impl Form {
    fn nullable(self) -> bool {
        self != Form::Doc
    }
}

/// Every memory size (MiB) Fargate offers for some cpu.
pub fn fargate_memories() -> Vec<u32> {
    let mut all: Vec<u32> = FARGATE_CPUS
        .iter()
        .flat_map(|&cpu| fargate_memory_for(cpu).unwrap_or_default())
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// "cpu 256 with 512, 1024 or 2048 MiB; cpu 512 with 1024-4096 MiB in steps of 1024; …"
fn fargate_pairs() -> String {
    let pair = |cpu: u32| {
        let sizes = fargate_memory_for(cpu).unwrap_or_default();
        match sizes.as_slice() {
            [first, second, .., last] if sizes.len() > 3 => {
                format!(
                    "cpu {cpu} with {first}-{last} MiB in steps of {}",
                    second - first
                )
            }
            [rest @ .., last] => {
                let rest: Vec<String> = rest.iter().map(u32::to_string).collect();
                format!("cpu {cpu} with {} or {last} MiB", rest.join(", "))
            }
            [] => String::new(),
        }
    };
    FARGATE_CPUS.map(pair).join("; ")
}

fn integers(form: Form, values: impl IntoIterator<Item = u32>, description: &str) -> Object {
    let mut allowed: Vec<Value> = values.into_iter().map(Value::from).collect();
    if form.nullable() {
        allowed.insert(0, Value::Null);
    }
    ObjectBuilder::new()
        .schema_type(nullable_type(Type::Integer, form.nullable()))
        .enum_values(Some(allowed))
        .description(Some(description))
        .build()
}

fn count(form: Form, max: u32, description: &str, example: u32) -> Object {
    ObjectBuilder::new()
        .schema_type(nullable_type(Type::Integer, form.nullable()))
        .minimum(Some(0))
        .maximum(Some(max))
        .description(Some(description))
        .examples([example])
        .build()
}

fn image(form: Form, description: &str, example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(nullable_type(Type::String, form.nullable()))
        .min_length(Some(1))
        .max_length(Some(image::MAX_LEN))
        .pattern(Some(image::PATTERN))
        .description(Some(format!("{description} It must be {}.", image::RULE)))
        .examples([example])
        .build()
}

fn env(form: Form) -> Object {
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[A-Z_][A-Z0-9_]*$"))
        .max_length(Some(MAX_ENV_NAME_LEN))
        .extensions(Some(Extensions::from_iter([(
            "not",
            json!({ "enum": RESERVED_ENV }),
        )])))
        .build();
    let value = ObjectBuilder::new()
        .schema_type(nullable_type(Type::String, form == Form::Patch))
        .max_length(Some(MAX_ENV_VALUE_LEN))
        .pattern(Some("^[^\\u0000]*$"));
    let removal = if form == Form::Patch {
        " In a patch, `null` removes a variable."
    } else {
        ""
    };
    ObjectBuilder::new()
        .schema_type(nullable_type(Type::Object, form.nullable()))
        .property_names(Some(name))
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(Schema::Object(
            value.build(),
        )))))
        .max_properties(Some(MAX_ENV_VARS))
        .description(Some(format!(
            "Extra environment for the `app` container. Names match `[A-Z_][A-Z0-9_]*`, have \
             at most {MAX_ENV_NAME_LEN} characters and are not {} (the platform sets those). \
             Each value is at most {MAX_ENV_VALUE_LEN} bytes of UTF-8 without NUL; names and \
             values together are at most {MAX_ENV_TOTAL_BYTES} bytes.{removal}",
            RESERVED_ENV.join(", ")
        )))
        .examples([json!({ "FEATURE_X": "on" })])
        .build()
}

fn size(form: Form, which: &str) -> Object {
    let mut object = ObjectBuilder::new()
        .schema_type(nullable_type(Type::Object, form.nullable()))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some(format!(
            "The {which} size the rightsizer may recommend: a Fargate pair."
        )))
        .property(
            "cpu",
            integers(
                form,
                FARGATE_CPUS,
                "Task CPU units; with `memory`, a Fargate pair.",
            ),
        )
        .property(
            "memory",
            integers(
                form,
                fargate_memories(),
                "Task memory in MiB; with `cpu`, a Fargate pair.",
            ),
        );
    if form == Form::Doc {
        object = object.required("cpu").required("memory");
    }
    object.build()
}

fn sizing(form: Form) -> Object {
    let mut modes: Vec<Value> = ["off", "recommend", "auto"]
        .into_iter()
        .map(Value::from)
        .collect();
    if form.nullable() {
        modes.insert(0, Value::Null);
    }
    let mode = ObjectBuilder::new()
        .schema_type(nullable_type(Type::String, form.nullable()))
        .enum_values(Some(modes))
        .description(Some(
            "`off`: no recommendation is made. `recommend` (the default): the recommendation \
             is kept on the tenant (`sizing.recommendation`) and only \
             `POST /v1/tenants/{name}/sizing/apply` applies it. `auto`: the rightsizer \
             applies it as a spec change, within its guards against flapping.",
        ));
    let mut object = ObjectBuilder::new()
        .schema_type(nullable_type(Type::Object, form.nullable()))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some(
            "Vertical rightsizing. `min` and `max` bound every size recommended; each must \
             be a cpu/memory pair Fargate offers, with `min.cpu` <= `max.cpu` and \
             `min.memory` <= `max.memory`.",
        ))
        .property("mode", mode)
        .property("min", size(form, "smallest"))
        .property("max", size(form, "largest"))
        .examples([json!({"mode": "auto", "min": {"cpu": 256, "memory": 512}, "max": {"cpu": 4096, "memory": 16384}})]);
    if form == Form::Doc {
        object = object.required("mode").required("min").required("max");
    }
    object.build()
}

fn spec(form: Form, max_tasks: u32) -> Schema {
    let members = match form {
        Form::Doc => "",
        Form::Input => {
            " Members left out, or sent as `null`, take the platform's defaults; the rules \
             apply to the spec that results."
        }
        Form::Patch => {
            " A JSON merge patch (RFC 7396): members left out keep their value and `null` \
             restores a member's default; the rules apply to the spec that results."
        }
    };
    let description = format!(
        "The application a tenant runs. `cpu` and `memory` must be a pair Fargate offers: {}. \
         `min_count` <= `desired_count` <= `max_count`.{members}",
        fargate_pairs()
    );
    let counts = "Autoscaling keeps the running count between `min_count` and `max_count`.";
    let fields: [(&str, Object); 9] = [
        (
            "app_image",
            image(
                form,
                "Image of the `app` container (port 8000).",
                "humangov/app:1.4.0",
            ),
        ),
        (
            "nginx_image",
            image(
                form,
                "Image of the `nginx` container (port 80, proxies to `app`).",
                "nginx:1.27-alpine",
            ),
        ),
        (
            "cpu",
            integers(
                form,
                FARGATE_CPUS,
                "Task CPU units; with `memory`, a Fargate pair.",
            ),
        ),
        (
            "memory",
            integers(
                form,
                fargate_memories(),
                "Task memory in MiB; with `cpu`, a Fargate pair.",
            ),
        ),
        (
            "desired_count",
            count(form, max_tasks, "Tasks to run now.", 1),
        ),
        ("min_count", count(form, max_tasks, counts, 1)),
        ("max_count", count(form, max_tasks, counts, 4)),
        ("env", env(form)),
        ("sizing", sizing(form)),
    ];
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for (name, schema) in fields {
        object = object.property(name, schema);
        if form == Form::Doc {
            object = object.required(name);
        }
    }
    Schema::Object(object.build())
}

impl SpecInput {
    /// The schema for a platform whose task count cap is `limits`.
    pub fn schema_for(limits: SpecLimits) -> Schema {
        spec(Form::Input, limits.max_task_count)
    }
}

impl SpecPatch {
    pub fn schema_for(limits: SpecLimits) -> Schema {
        spec(Form::Patch, limits.max_task_count)
    }
}

impl PartialSchema for SpecDoc {
    /// A stored spec may predate a lower cap, so it is bounded by the ceiling only.
    fn schema() -> RefOr<Schema> {
        RefOr::T(spec(Form::Doc, MAX_TASK_COUNT_CEILING))
    }
}

impl ToSchema for SpecDoc {}

impl PartialSchema for SpecInput {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Self::schema_for(SpecLimits::default()))
    }
}

impl ToSchema for SpecInput {}

impl PartialSchema for SpecPatch {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Self::schema_for(SpecLimits::default()))
    }
}

impl ToSchema for SpecPatch {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::spec::TaskSize;

    #[test]
    fn every_memory_in_the_enum_fits_some_cpu_and_every_pair_is_listed() {
        for memory in fargate_memories() {
            assert!(FARGATE_CPUS
                .iter()
                .any(|&cpu| TaskSize::new(cpu, memory).is_ok()));
        }
        let pairs = fargate_pairs();
        assert!(pairs.starts_with(
            "cpu 256 with 512, 1024 or 2048 MiB; cpu 512 with 1024-4096 MiB in steps of 1024"
        ));
        assert!(pairs.ends_with("cpu 16384 with 32768-122880 MiB in steps of 8192"));
    }

    #[test]
    fn the_input_schema_bounds_counts_by_the_configured_cap() {
        let schema =
            serde_json::to_value(SpecInput::schema_for(SpecLimits { max_task_count: 7 })).unwrap();
        assert_eq!(schema["properties"]["max_count"]["maximum"], 7);
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            schema["properties"]["env"]["propertyNames"]["not"]["enum"][0],
            "AWS_BUCKET"
        );
        assert_eq!(schema["properties"]["cpu"]["enum"][0], Value::Null);
    }
}
