//! Error answers in each protocol's real format, as AWS sends them.

use http_body_util::Full;
use hyper::{body::Bytes, Response, StatusCode};

use super::identify::{Call, Protocol};

/// An error AWS could answer with; `code` and `message` default per protocol and status.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ErrorReply {
    /// What the service says when it throttles a caller.
    pub fn throttling(call: &Call) -> Self {
        let (status, code, message) = match call.protocol() {
            Protocol::Json10 => (
                400,
                "ThrottlingException",
                "Rate of requests exceeds the allowed throughput.",
            ),
            Protocol::Json11 => (400, "ThrottlingException", "Rate exceeded"),
            Protocol::Query => (400, "Throttling", "Rate exceeded"),
            Protocol::Ec2 => (503, "RequestLimitExceeded", "Request limit exceeded."),
            Protocol::S3 => (503, "SlowDown", "Please reduce your request rate."),
        };
        Self::new(status, code, message)
    }

    /// The service's own code for a 500 or 503; `None` for other statuses, which need one.
    pub fn server(call: &Call, status: u16) -> Option<Self> {
        let p = call.protocol();
        let (code, message) = match (status, p) {
            (500, Protocol::S3) => (
                "InternalError",
                "We encountered an internal error. Please try again.",
            ),
            (500, Protocol::Ec2) => ("InternalError", "An internal error has occurred."),
            (500, _) => (
                "InternalFailure",
                "The request processing has failed because of an unknown error, exception or failure.",
            ),
            (503, Protocol::Json10 | Protocol::Json11) => {
                ("ServiceUnavailableException", "Service is unavailable.")
            }
            (503, Protocol::Ec2) => ("Unavailable", "The server is overloaded."),
            (503, _) => ("ServiceUnavailable", "Service is unable to handle request."),
            _ => return None,
        };
        Some(Self::new(status, code, message))
    }

    pub fn new(status: u16, code: &str, message: &str) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.to_owned(),
        }
    }

    pub fn to_response(&self, call: &Call) -> Response<Full<Bytes>> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let id = uuid::Uuid::now_v7();
        let (content_type, body) = match call.protocol() {
            Protocol::Json10 => ("application/x-amz-json-1.0", self.json(call)),
            Protocol::Json11 => ("application/x-amz-json-1.1", self.json(call)),
            Protocol::Query => ("text/xml", self.query(call, &id.to_string())),
            Protocol::Ec2 => ("text/xml;charset=UTF-8", self.ec2(&id.to_string())),
            Protocol::S3 => ("application/xml", self.s3(&s3_request_id(&id))),
        };
        let builder = Response::builder()
            .status(status)
            .header("content-type", content_type);
        let builder = match call.protocol() {
            Protocol::S3 => builder
                .header("x-amz-request-id", s3_request_id(&id))
                .header("x-amz-id-2", id.simple().to_string()),
            _ => builder.header("x-amzn-requestid", id.to_string()),
        };
        builder
            .body(Full::new(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
    }

    fn json(&self, call: &Call) -> String {
        let kind = match call.protocol() {
            Protocol::Json10 => format!("com.amazonaws.dynamodb.v20120810#{}", self.code),
            _ => self.code.clone(),
        };
        serde_json::json!({ "__type": kind, "message": self.message }).to_string()
    }

    fn query(&self, call: &Call, id: &str) -> String {
        let (namespace, version) = match call.service.as_str() {
            "iam" => ("iam", "2010-05-08"),
            "sts" => ("sts", "2011-06-15"),
            _ => ("elasticloadbalancing", "2015-12-01"),
        };
        let kind = if self.status >= 500 {
            "Receiver"
        } else {
            "Sender"
        };
        format!(
            "<ErrorResponse xmlns=\"https://{namespace}.amazonaws.com/doc/{version}/\">\n  \
             <Error>\n    <Type>{kind}</Type>\n    <Code>{}</Code>\n    <Message>{}</Message>\n  \
             </Error>\n  <RequestId>{id}</RequestId>\n</ErrorResponse>\n",
            xml(&self.code),
            xml(&self.message)
        )
    }

    fn ec2(&self, id: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code>\
             <Message>{}</Message></Error></Errors><RequestID>{id}</RequestID></Response>",
            xml(&self.code),
            xml(&self.message)
        )
    }

    fn s3(&self, id: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>\
             <RequestId>{id}</RequestId><HostId>{id}</HostId></Error>",
            xml(&self.code),
            xml(&self.message)
        )
    }
}

/// S3 request ids are 16 upper-case hex digits.
fn s3_request_id(id: &uuid::Uuid) -> String {
    id.simple().to_string()[16..].to_ascii_uppercase()
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// A 200 with `json` as the body, in the call's JSON protocol.
pub fn fixture(call: &Call, json: String) -> Response<Full<Bytes>> {
    let content_type = match call.protocol() {
        Protocol::Json10 => "application/x-amz-json-1.0",
        _ => "application/x-amz-json-1.1",
    };
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("x-amzn-requestid", uuid::Uuid::now_v7().to_string())
        .body(Full::new(Bytes::from(json)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn call(service: &str) -> Call {
        Call {
            service: service.into(),
            operation: "Op".into(),
        }
    }

    async fn parts(reply: &ErrorReply, service: &str) -> (u16, String, String) {
        let res = reply.to_response(&call(service));
        let status = res.status().as_u16();
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, ct, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn throttling_looks_like_each_protocols_own() {
        let (s, ct, body) = parts(&ErrorReply::throttling(&call("ecs")), "ecs").await;
        assert_eq!((s, ct.as_str()), (400, "application/x-amz-json-1.1"));
        assert_eq!(
            body,
            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#
        );

        let (s, _, body) = parts(&ErrorReply::throttling(&call("dynamodb")), "dynamodb").await;
        assert_eq!(s, 400);
        assert!(body.contains("com.amazonaws.dynamodb.v20120810#ThrottlingException"));

        let (s, ct, body) = parts(&ErrorReply::throttling(&call("iam")), "iam").await;
        assert_eq!((s, ct.as_str()), (400, "text/xml"));
        assert!(
            body.contains("<Type>Sender</Type>\n    <Code>Throttling</Code>"),
            "{body}"
        );

        let (s, _, body) = parts(&ErrorReply::throttling(&call("s3")), "s3").await;
        assert_eq!(s, 503);
        assert!(body.contains("<Code>SlowDown</Code><Message>Please reduce your request rate."));
    }

    #[test]
    fn server_errors_have_defaults_only_for_500_and_503() {
        assert_eq!(
            ErrorReply::server(&call("ecs"), 503).unwrap().code,
            "ServiceUnavailableException"
        );
        assert_eq!(
            ErrorReply::server(&call("iam"), 500).unwrap().code,
            "InternalFailure"
        );
        assert_eq!(
            ErrorReply::server(&call("s3"), 500).unwrap().code,
            "InternalError"
        );
        assert_eq!(ErrorReply::server(&call("ecs"), 418), None);
    }

    #[tokio::test]
    async fn messages_are_escaped_for_their_format() {
        let r = ErrorReply::new(400, "InvalidParameterException", "role \"x\" <y> & z");
        let (_, _, json) = parts(&r, "ecs").await;
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).unwrap()["message"],
            "role \"x\" <y> & z"
        );
        let (_, _, xml) = parts(&r, "elasticloadbalancing").await;
        assert!(
            xml.contains("role &quot;x&quot; &lt;y&gt; &amp; z"),
            "{xml}"
        );
    }
}
