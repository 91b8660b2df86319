//! Exit codes of the client commands, so scripts can tell failures apart without parsing
//! messages. The same table is in `statehouse tenants --help` and the README.

use crate::client::ClientError;

pub const FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const NOT_FOUND: u8 = 3;
pub const CONFLICT: u8 = 4;
pub const AUTH: u8 = 5;
pub const SERVER: u8 = 6;
pub const TIMEOUT: u8 = 7;

pub const HELP: &str = "\
Exit codes:
  0  success (with --wait: the tenant is ready, or deleted)
  1  a tenant failed (the error is printed), or another error
  2  usage: a bad flag, name or spec (the API's validation errors included)
  3  not found
  4  conflict: the tenant exists, is being deleted, or changed twice while updating
  5  authentication: no token, a bad token, or a key not allowed to do this
  6  server: the API answered 5xx, stayed too busy (429), or cannot be reached
  7  timeout: --wait gave up before the tenant got there";

/// An error that ends the process with a particular exit code; `main` prints its message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl Exit {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(USAGE, message)
    }
}

impl From<ClientError> for Exit {
    fn from(err: ClientError) -> Self {
        Self {
            code: for_client_error(&err),
            message: describe(&err),
        }
    }
}

/// The problem's title and detail, and each field error the detail does not already say.
fn describe(err: &ClientError) -> String {
    let mut message = err.to_string();
    if let ClientError::Api(problem) = err {
        for field in &problem.errors {
            let line = format!("{}: {}", field.field, field.message);
            if !problem.detail.contains(&line) {
                message.push_str(&format!("\n  {line}"));
            }
        }
    }
    message
}

fn for_client_error(err: &ClientError) -> u8 {
    match err {
        ClientError::Api(problem) => for_status(problem.status),
        ClientError::Unreachable { .. } => SERVER,
        ClientError::Protocol { .. } => FAILED,
    }
}

/// The exit code for an API error status.
fn for_status(status: u16) -> u8 {
    match status {
        400 | 422 => USAGE,
        401 | 403 => AUTH,
        404 => NOT_FOUND,
        409 | 412 => CONFLICT,
        429 | 500..=599 => SERVER,
        _ => FAILED,
    }
}

/// The exit code and message for any error a command returned.
pub fn report(err: &anyhow::Error) -> (u8, String) {
    if let Some(exit) = err.downcast_ref::<Exit>() {
        (exit.code, exit.message.clone())
    } else if let Some(client) = err.downcast_ref::<ClientError>() {
        (for_client_error(client), describe(client))
    } else {
        (FAILED, format!("{err:#}"))
    }
}
