//! Which AWS service and operation a request is: the service from the SigV4 credential
//! scope, the operation from each protocol's own place for it.

use hyper::{HeaderMap, Method};

/// The wire protocol a service speaks, which decides how its errors look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// awsJson1_0 (DynamoDB).
    Json10,
    /// awsJson1_1 (ECS, CloudWatch Logs, Application Auto Scaling).
    Json11,
    /// awsQuery (IAM, ELBv2, STS).
    Query,
    /// The EC2 flavour of the query protocol.
    Ec2,
    /// S3's REST-XML.
    S3,
}

/// The services statehouse talks to, by their SigV4 signing names.
pub const SERVICES: &[&str] = &[
    "application-autoscaling",
    "dynamodb",
    "ec2",
    "ecs",
    "elasticloadbalancing",
    "iam",
    "logs",
    "s3",
    "sts",
];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Call {
    pub service: String,
    pub operation: String,
}

impl Call {
    pub fn protocol(&self) -> Protocol {
        match self.service.as_str() {
            "dynamodb" => Protocol::Json10,
            "ecs" | "logs" | "application-autoscaling" => Protocol::Json11,
            "ec2" => Protocol::Ec2,
            "s3" => Protocol::S3,
            _ => Protocol::Query,
        }
    }
}

pub fn identify(
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Call {
    let service = signing_service(headers).unwrap_or_else(|| "unknown".to_owned());
    let operation = if let Some(target) = header(headers, "x-amz-target") {
        target.rsplit('.').next().unwrap_or(target).to_owned()
    } else if service == "s3" {
        s3_operation(method, path, query, headers)
    } else {
        form_action(query)
            .or_else(|| form_action(std::str::from_utf8(body).unwrap_or("")))
            .unwrap_or("Unknown")
            .to_owned()
    };
    Call { service, operation }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `AWS4-HMAC-SHA256 Credential=AKID/20240101/us-west-2/ecs/aws4_request, SignedHeaders=…`
fn signing_service(headers: &HeaderMap) -> Option<String> {
    let auth = header(headers, "authorization")?;
    let credential = auth.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(3).map(str::to_owned)
}

/// `Action=CreateRole&Version=2010-05-08` in a query string or a form body.
fn form_action(form: &str) -> Option<&str> {
    form.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
}

fn s3_operation(method: &Method, path: &str, query: &str, headers: &HeaderMap) -> String {
    let params: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    // The SDK names some operations itself.
    if let Some((_, id)) = params.iter().find(|(k, _)| *k == "x-id") {
        return (*id).to_owned();
    }
    let has = |name: &str| params.iter().any(|(k, _)| *k == name);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let op = match (segments.len(), method.as_str()) {
        (0, "GET") => "ListBuckets",
        (1, "PUT") => bucket_subresource(&has, "Put").unwrap_or("CreateBucket"),
        (1, "GET") if has("versions") => "ListObjectVersions",
        (1, "GET") if has("list-type") => "ListObjectsV2",
        (1, "GET") if has("location") => "GetBucketLocation",
        (1, "GET") if has("uploads") => "ListMultipartUploads",
        (1, "GET") => bucket_subresource(&has, "Get").unwrap_or("ListObjects"),
        (1, "HEAD") => "HeadBucket",
        (1, "DELETE") => bucket_subresource(&has, "Delete").unwrap_or("DeleteBucket"),
        (1, "POST") if has("delete") => "DeleteObjects",
        (n, "PUT") if n > 1 && headers.contains_key("x-amz-copy-source") => "CopyObject",
        (n, "PUT") if n > 1 => "PutObject",
        (n, "GET") if n > 1 => "GetObject",
        (n, "HEAD") if n > 1 => "HeadObject",
        (n, "DELETE") if n > 1 => "DeleteObject",
        (n, "POST") if n > 1 && has("uploads") => "CreateMultipartUpload",
        _ => "Unknown",
    };
    op.to_owned()
}

/// `?policy` on a bucket is PutBucketPolicy, GetBucketPolicy or DeleteBucketPolicy.
fn bucket_subresource(has: &dyn Fn(&str) -> bool, verb: &str) -> Option<&'static str> {
    const NAMES: &[(&str, [&str; 3])] = &[
        (
            "policy",
            ["PutBucketPolicy", "GetBucketPolicy", "DeleteBucketPolicy"],
        ),
        (
            "publicAccessBlock",
            [
                "PutPublicAccessBlock",
                "GetPublicAccessBlock",
                "DeletePublicAccessBlock",
            ],
        ),
        (
            "encryption",
            [
                "PutBucketEncryption",
                "GetBucketEncryption",
                "DeleteBucketEncryption",
            ],
        ),
        (
            "versioning",
            ["PutBucketVersioning", "GetBucketVersioning", "Unknown"],
        ),
        (
            "tagging",
            [
                "PutBucketTagging",
                "GetBucketTagging",
                "DeleteBucketTagging",
            ],
        ),
        (
            "lifecycle",
            [
                "PutBucketLifecycleConfiguration",
                "GetBucketLifecycleConfiguration",
                "DeleteBucketLifecycle",
            ],
        ),
    ];
    let index = match verb {
        "Put" => 0,
        "Get" => 1,
        _ => 2,
    };
    NAMES
        .iter()
        .find(|(sub, _)| has(sub))
        .map(|(_, names)| names[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(service: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            format!(
                "AWS4-HMAC-SHA256 Credential=testing/20250101/us-west-2/{service}/aws4_request, \
                 SignedHeaders=host;x-amz-date, Signature=abc"
            )
            .parse()
            .unwrap(),
        );
        h
    }

    fn call(service: &str, operation: &str) -> Call {
        Call {
            service: service.into(),
            operation: operation.into(),
        }
    }

    #[test]
    fn json_protocols_are_named_by_their_target_header() {
        for (service, target, op) in [
            (
                "ecs",
                "AmazonEC2ContainerServiceV20141113.CreateService",
                "CreateService",
            ),
            ("dynamodb", "DynamoDB_20120810.CreateTable", "CreateTable"),
            ("logs", "Logs_20140328.CreateLogGroup", "CreateLogGroup"),
            (
                "application-autoscaling",
                "AnyScaleFrontendService.RegisterScalableTarget",
                "RegisterScalableTarget",
            ),
        ] {
            let mut h = signed(service);
            h.insert("x-amz-target", target.parse().unwrap());
            let c = identify(&Method::POST, "/", "", &h, b"{}");
            assert_eq!(c, call(service, op));
        }
        assert_eq!(call("dynamodb", "x").protocol(), Protocol::Json10);
        assert_eq!(call("ecs", "x").protocol(), Protocol::Json11);
    }

    #[test]
    fn query_protocols_are_named_by_the_action_in_the_form_body() {
        for (service, body, op) in [
            (
                "iam",
                "Action=CreateRole&Version=2010-05-08&RoleName=x",
                "CreateRole",
            ),
            (
                "elasticloadbalancing",
                "Version=2015-12-01&Action=CreateTargetGroup&Name=x",
                "CreateTargetGroup",
            ),
            (
                "sts",
                "Action=GetCallerIdentity&Version=2011-06-15",
                "GetCallerIdentity",
            ),
            (
                "ec2",
                "Action=DescribeVpcs&Version=2016-11-15",
                "DescribeVpcs",
            ),
        ] {
            let c = identify(&Method::POST, "/", "", &signed(service), body.as_bytes());
            assert_eq!(c, call(service, op));
        }
        assert_eq!(call("iam", "x").protocol(), Protocol::Query);
        assert_eq!(call("ec2", "x").protocol(), Protocol::Ec2);
    }

    #[test]
    fn s3_operations_are_named_by_method_path_and_subresource() {
        let h = signed("s3");
        let mut copy = signed("s3");
        copy.insert("x-amz-copy-source", "b/k".parse().unwrap());
        for (method, path, query, headers, op) in [
            (Method::PUT, "/b", "", &h, "CreateBucket"),
            (Method::PUT, "/b/", "policy", &h, "PutBucketPolicy"),
            (
                Method::PUT,
                "/b",
                "publicAccessBlock",
                &h,
                "PutPublicAccessBlock",
            ),
            (Method::PUT, "/b", "encryption", &h, "PutBucketEncryption"),
            (Method::PUT, "/b", "versioning", &h, "PutBucketVersioning"),
            (Method::PUT, "/b", "tagging", &h, "PutBucketTagging"),
            (Method::GET, "/b", "tagging", &h, "GetBucketTagging"),
            (Method::GET, "/b", "policy", &h, "GetBucketPolicy"),
            (
                Method::GET,
                "/b",
                "versions&max-keys=1000",
                &h,
                "ListObjectVersions",
            ),
            (Method::GET, "/b", "list-type=2", &h, "ListObjectsV2"),
            (Method::GET, "/b", "location", &h, "GetBucketLocation"),
            (Method::HEAD, "/b", "", &h, "HeadBucket"),
            (Method::POST, "/b", "delete", &h, "DeleteObjects"),
            (Method::DELETE, "/b", "", &h, "DeleteBucket"),
            (Method::DELETE, "/b", "policy", &h, "DeleteBucketPolicy"),
            (Method::GET, "/", "", &h, "ListBuckets"),
            (Method::PUT, "/b/some/key", "", &h, "PutObject"),
            (Method::PUT, "/b/k2", "", &copy, "CopyObject"),
            (Method::GET, "/b/k", "x-id=GetObject", &h, "GetObject"),
            (Method::HEAD, "/b/k", "", &h, "HeadObject"),
        ] {
            let c = identify(&method, path, query, headers, b"");
            assert_eq!(c, call("s3", op), "{method} {path}?{query}");
        }
        assert_eq!(call("s3", "x").protocol(), Protocol::S3);
    }

    #[test]
    fn an_unsigned_request_is_unknown_rather_than_a_guess() {
        let c = identify(&Method::GET, "/moto-api/", "", &HeaderMap::new(), b"");
        assert_eq!(c, call("unknown", "Unknown"));
    }
}
