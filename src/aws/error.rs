//! One error type for every AWS call, with the classification the reconciler acts on:
//! transient errors are retried, permanent ones fail the tenant until its spec changes.

use std::fmt;

use aws_sdk_s3::{
    error::{ProvideErrorMetadata, SdkError},
    operation::RequestId,
};

/// Error codes that mean "slow down or try again", across the services' protocols.
const TRANSIENT_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
    "LimitExceededException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServerException",
    "PriorRequestNotComplete",
    "OperationAborted",
    // DynamoDB: a table just created, or busy with a backup, refuses these for a while.
    "ContinuousBackupsUnavailableException",
    "ConcurrentModification",
    "ConcurrentModificationException",
];

/// Messages that mean IAM has not yet propagated a new role (it can take ~2 minutes).
const PROPAGATION_MESSAGES: &[&str] =
    &["unable to assume", "cannot be assumed", "role is not valid"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Transient,
    Permanent,
}

#[derive(Debug, Clone, thiserror::Error)]
pub struct AwsError {
    pub service: &'static str,
    pub operation: &'static str,
    /// AWS's error code, or the SDK's kind of failure when AWS did not answer.
    pub code: String,
    /// AWS's own message.
    pub message: String,
    pub request_id: Option<String>,
    pub http_status: Option<u16>,
    pub retry: Retry,
}

impl fmt::Display for AwsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} failed: {}: {}",
            self.service, self.operation, self.code, self.message
        )?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl AwsError {
    pub fn is(&self, codes: &[&str]) -> bool {
        codes.contains(&self.code.as_str())
    }

    pub fn is_transient(&self) -> bool {
        self.retry == Retry::Transient
    }

    pub fn from_sdk<E>(service: &'static str, operation: &'static str, err: SdkError<E>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let http_status = err.raw_response().map(|r| r.status().as_u16());
        let request_id = err.meta().request_id().map(str::to_owned);
        let (code, message) = match &err {
            SdkError::ServiceError(_) | SdkError::ResponseError(_) => (
                err.code().unwrap_or("Unknown").to_owned(),
                err.message().map_or_else(|| sdk_text(&err), str::to_owned),
            ),
            SdkError::TimeoutError(_) => ("Timeout".to_owned(), sdk_text(&err)),
            SdkError::DispatchFailure(_) => ("DispatchFailure".to_owned(), sdk_text(&err)),
            _ => ("ConstructionFailure".to_owned(), sdk_text(&err)),
        };
        let mut retry = classify(&err, &code, &message, http_status);
        let mut code = code;
        let mut message = message;
        // The call was never sent: the clients' credentials (AssumeRole on a cell's role)
        // could not be had. What STS said is the error; it may pass (a role being fixed).
        if let Some((sts_code, sts_message)) = credentials_failure(&err) {
            code = "CredentialsUnavailable".to_owned();
            message = format!("cannot get credentials: STS answered {sts_code}: {sts_message}");
            retry = Retry::Transient;
        }
        // Refused by the call counter, never sent: the pass's lease may be gone. Another
        // pass (this worker's or another's) will do the work; nothing is wrong with AWS.
        if lease_lapsed(&err) {
            code = "LeaseLapsed".to_owned();
            retry = Retry::Transient;
        }
        Self {
            service,
            operation,
            code,
            message,
            request_id,
            http_status,
            retry,
        }
    }
}

/// What STS answered, when a call failed because AssumeRole did.
fn credentials_failure(err: &(dyn std::error::Error + 'static)) -> Option<(String, String)> {
    use aws_sdk_sts::operation::assume_role::AssumeRoleError;
    use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(sts) = e.downcast_ref::<SdkError<AssumeRoleError, HttpResponse>>() {
            return Some((
                sts.code().unwrap_or("Unknown").to_owned(),
                sts.message().unwrap_or("no message").to_owned(),
            ));
        }
        source = e.source();
    }
    None
}

fn lease_lapsed(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(e) = source {
        if e.is::<super::calls::LeaseLapsed>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn sdk_text<E: std::error::Error + 'static>(err: &SdkError<E>) -> String {
    aws_sdk_s3::error::DisplayErrorContext(err).to_string()
}

fn classify<E>(err: &SdkError<E>, code: &str, message: &str, status: Option<u16>) -> Retry {
    let transient = match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => {
            TRANSIENT_CODES.contains(&code)
                || status.is_some_and(|s| s >= 500 || s == 429)
                || PROPAGATION_MESSAGES
                    .iter()
                    .any(|m| message.to_ascii_lowercase().contains(m))
        }
        _ => false,
    };
    if transient {
        Retry::Transient
    } else {
        Retry::Permanent
    }
}

impl AwsError {
    /// An error found in an answer AWS gave without failing the call.
    pub fn new(
        service: &'static str,
        operation: &'static str,
        code: impl Into<String>,
        message: impl Into<String>,
        retry: Retry,
    ) -> Self {
        let (code, message) = (code.into(), message.into());
        Self {
            service,
            operation,
            code,
            message,
            request_id: None,
            http_status: None,
            retry,
        }
    }

    /// A request the SDK refused to build: always a bug in what we asked, never worth retrying.
    pub fn build(
        service: &'static str,
        operation: &'static str,
        err: aws_sdk_s3::error::BuildError,
    ) -> Self {
        Self::new(
            service,
            operation,
            "InvalidRequest",
            err.to_string(),
            Retry::Permanent,
        )
    }

    /// `Ok` when the error is one of `codes` (e.g. "not found" on a delete), else the error.
    pub fn tolerate(self, codes: &[&str]) -> Result<(), Self> {
        if self.is(codes) {
            Ok(())
        } else {
            Err(self)
        }
    }
}

/// `map_err` adapter for one operation of one service.
pub fn sdk<E>(
    service: &'static str,
    operation: &'static str,
) -> impl FnOnce(SdkError<E>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    move |e| AwsError::from_sdk(service, operation, e)
}
