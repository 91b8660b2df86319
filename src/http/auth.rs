//! Bearer-key authentication for `/v1`. Handlers ask for [`Caller`] to read and
//! [`AdminCaller`] to write.

use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts},
};

use super::{error::ApiError, AppState};
use crate::{
    auth::{hash_token, Role, BOOTSTRAP_KEY_NAME},
    db,
};

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub key_name: String,
    pub role: Role,
}

impl Caller {
    /// How the caller appears in a tenant's history.
    pub fn actor(&self) -> String {
        format!("key:{}", self.key_name)
    }
}

impl<S> FromRequestParts<S> for Caller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let state = AppState::from_ref(state);
        let token = bearer_token(parts)?;
        let hash = hash_token(token);
        let caller = if state.bootstrap_token_hash == Some(hash) {
            Caller {
                key_name: BOOTSTRAP_KEY_NAME.into(),
                role: Role::Admin,
            }
        } else {
            match state.keys.get(&hash) {
                Ok(caller) => caller,
                Err(ticket) => {
                    let key = db::keys::find_active(&state.pool, &hash).await?.ok_or(
                        ApiError::Unauthorized("the API key is not valid or has been revoked"),
                    )?;
                    db::keys::touch(&state.pool, key.id).await?;
                    let caller = Caller {
                        key_name: key.name,
                        role: key.role,
                    };
                    if let Some(ticket) = ticket {
                        state.keys.keep(ticket, caller.clone());
                    }
                    caller
                }
            }
        };
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

fn bearer_token(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(
            "send an API key as `Authorization: Bearer <key>`",
        ))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not valid text"))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::Unauthorized(
            "the Authorization header must be `Bearer <key>`",
        )),
    }
}

/// A caller whose key may change things.
#[derive(Debug, Clone)]
pub struct AdminCaller(pub Caller);

impl<S> FromRequestParts<S> for AdminCaller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        match caller.role {
            Role::Admin => Ok(AdminCaller(caller)),
            Role::Viewer => Err(ApiError::Forbidden(format!(
                "key `{}` is a viewer key and may only read; this needs an admin key",
                caller.key_name
            ))),
        }
    }
}
