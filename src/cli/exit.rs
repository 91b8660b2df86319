//! How a command's error ends the process: its exit code and the message `main` prints.

pub const FAILED: u8 = 1;

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
}

/// The exit code and message for any error a command returned.
pub fn report(err: &anyhow::Error) -> (u8, String) {
    if let Some(exit) = err.downcast_ref::<Exit>() {
        (exit.code, exit.message.clone())
    } else {
        (FAILED, format!("{err:#}"))
    }
}
