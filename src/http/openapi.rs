//! The OpenAPI description, assembled from each area's routes. It states every rule the
//! server enforces that OpenAPI 3.1 can express: the schemas come from the types in
//! `domain/` that do the checking, and the answers every `/v1` operation can give besides
//! its own are added here, once.

use utoipa::{
    openapi::{
        content::Content,
        header::Header,
        path::Operation,
        response::{Response, ResponseBuilder},
        schema::{ObjectBuilder, Ref, Schema, Type},
        security::{Http, HttpAuthScheme, SecurityScheme},
        RefOr,
    },
    Modify, OpenApi,
};
use utoipa_axum::router::OpenApiRouter;

use super::{actions, defaults, events, fleet, health, rollouts, sizing, tenants, AppState};
use crate::domain::spec::{SpecInput, SpecLimits, SpecPatch};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "statehouse",
        description = "Gives every US state its own isolated copy of the application on AWS. \
            Every `/v1` call needs `Authorization: Bearer <key>`; errors are RFC 9457 problems \
            (`application/problem+json`) whose `errors` name the member or parameter at fault. \
            Any `/v1` call may also answer 401 (no valid key), 429 (every database connection \
            busy; retry after `Retry-After` seconds) or 503 (the database cannot be reached).",
        license(name = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants", description = "States' tenants: create, read, change, delete, and their history"),
        (name = "fleet", description = "Is each state up: observed health, live readings, the whole fleet at a glance, and the spec new tenants get"),
        (name = "sizing", description = "Vertical rightsizing: the Fargate size each state needs, from its CPU and memory, with the evidence and the cost; applied by a person or, with `auto`, by the rightsizer within its guards"),
        (name = "rollouts", description = "Ship a spec change (a new image, say) to many states in waves: a canary first, bakes with health gates, automatic halt and rollback"),
        (name = "health", description = "Probes and metrics"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.description = Some("An API key from `statehouse keys create`".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The answers any `/v1` operation can give, whatever it does (a bad key, a full queue, a
/// database down); applied once every route is merged in.
struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for operation in operations(item) {
                for (status, answer) in shared_answers() {
                    operation
                        .responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| answer.into());
                }
            }
        }
    }
}

fn shared_answers() -> [(&'static str, Response); 3] {
    let seconds = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1));
    let mut retry_after = Header::new(seconds);
    retry_after.description = Some("Seconds to wait before retrying".into());
    let mut challenge = Header::new(ObjectBuilder::new().schema_type(Type::String));
    challenge.description = Some("`Bearer realm=\"statehouse\"`".into());
    [
        (
            "401",
            problem(
                "No key, a malformed `Authorization` header, or a key that is not valid or was revoked",
                ("WWW-Authenticate", challenge),
            ),
        ),
        (
            "429",
            problem(
                "Every database connection stayed busy while the request waited its turn; nothing was done, so it may be sent again after `Retry-After` seconds",
                ("Retry-After", retry_after.clone()),
            ),
        ),
        (
            "503",
            problem(
                "The database cannot be reached; retry after `Retry-After` seconds",
                ("Retry-After", retry_after),
            ),
        ),
    ]
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.options.as_mut(),
        item.head.as_mut(),
        item.patch.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn problem(description: &str, (name, header): (&str, Header)) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            super::error::PROBLEM_JSON,
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .header(name, header)
        .build()
}

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(tenants::router())
        .merge(events::router())
        .merge(actions::router())
        .merge(fleet::router())
        .merge(defaults::router())
        .merge(rollouts::router())
        .merge(sizing::router())
        .merge(health::router())
}

/// The document for the default configuration, committed as `openapi/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    document_for(SpecLimits::default(), &[])
}

/// The document a server configured with `limits` serves at `/openapi.json`: its bounds on
/// task counts are the configured cap.
pub fn document_for(limits: SpecLimits, cells: &[String]) -> utoipa::openapi::OpenApi {
    let mut doc = router().into_openapi();
    SharedAnswers.modify(&mut doc);
    if let Some(components) = doc.components.as_mut() {
        // A create may name only a configured cell: the served document lists them.
        if let Some(RefOr::T(Schema::Object(create))) = components.schemas.get_mut("CreateTenant") {
            if let Some(RefOr::T(Schema::Object(cell))) = create.properties.get_mut("cell") {
                if !cells.is_empty() {
                    cell.enum_values = Some(cells.iter().map(|c| serde_json::json!(c)).collect());
                    cell.examples = vec![serde_json::json!(cells[0])];
                }
            }
        }
        components
            .schemas
            .insert("SpecInput".into(), SpecInput::schema_for(limits).into());
        components
            .schemas
            .insert("SpecPatch".into(), SpecPatch::schema_for(limits).into());
    }
    doc
}
