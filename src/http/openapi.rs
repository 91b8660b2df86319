//! The OpenAPI description, assembled from each area's routes.

use utoipa::{
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
    Modify, OpenApi,
};
use utoipa_axum::router::OpenApiRouter;

use super::{actions, health, tenants, AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "statehouse",
        description = "Gives every US state its own isolated copy of the application on AWS. \
            Every `/v1` call needs `Authorization: Bearer <key>`; errors are RFC 9457 problems.",
        license(name = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "tenants", description = "States' tenants: create, read, change, delete, and their history"),
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

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(tenants::router())
        .merge(actions::router())
        .merge(health::router())
}

/// The document served at `/openapi.json` and committed as `openapi/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    router().into_openapi()
}
