//! The IAM actions terraform-modules/control-plane grants the worker are exactly the ones
//! its code needs: every AWS operation called under `src/` is covered by
//! `terraform-modules/control-plane/worker-actions.json`, and every operation that file
//! names is still called, so the list can neither fall behind the code nor keep a grant
//! nothing uses.
//!
//! The calls are found by reading the source, not from a hand list: a client is `aws.s3`,
//! `self.aws.ecs`, … (the fields of `statehouse::aws::Aws`), a local bound to one of those,
//! or a parameter typed `&Client` / `&aws_sdk_x::Client`; the method called on it is the
//! operation. As a guard against a call the scanner cannot see, every file must have as
//! many recognised operations as `.send()` calls.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

/// `statehouse dev bootstrap` builds the shared platform inside the local emulator and
/// refuses a real account unless told otherwise; in a real account terraform-modules/
/// makes that platform, so its calls are not the worker's and get no grant. `statehouse dev
/// put-metrics` writes synthetic ECS metrics and runs against the emulator only; on AWS,
/// ECS publishes them.
const DEV_ONLY: &[&str] = &["src/cli/dev.rs", "src/cli/synthetic.rs"];

/// The fields of `statehouse::aws::Aws` and the SDK crate each one is a client of.
const AWS_FIELDS: &[(&str, &str)] = &[
    ("s3", "s3"),
    ("dynamodb", "dynamodb"),
    ("iam", "iam"),
    ("logs", "cloudwatchlogs"),
    ("ecs", "ecs"),
    ("elb", "elasticloadbalancingv2"),
    ("autoscaling", "applicationautoscaling"),
    ("cloudwatch", "cloudwatch"),
    ("sts", "sts"),
];

/// Methods of an SDK client that are not AWS operations.
const NOT_OPERATIONS: &[&str] = &["clone", "config"];

/// The IAM service prefix of each SDK crate.
fn iam_prefix(krate: &str) -> &'static str {
    match krate {
        "s3" => "s3",
        "dynamodb" => "dynamodb",
        "iam" => "iam",
        "cloudwatchlogs" => "logs",
        "ecs" => "ecs",
        "elasticloadbalancingv2" => "elasticloadbalancing",
        "applicationautoscaling" => "application-autoscaling",
        "sts" => "sts",
        "ec2" => "ec2",
        "cloudwatch" => "cloudwatch",
        other => panic!("no IAM service prefix known for aws_sdk_{other}: add it here"),
    }
}

/// An AWS operation, named as IAM names services and the API names operations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Operation {
    service: &'static str,
    name: String,
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.service, self.name)
    }
}

fn pascal_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The IAM action an operation is authorised by, or `None` for one that needs no grant.
/// Most share the operation's name; S3 is the exception.
fn action_for(op: &Operation) -> Option<String> {
    let renamed = match (op.service, op.name.as_str()) {
        // GetCallerIdentity is allowed to every principal; an explicit deny cannot stop it.
        ("sts", "GetCallerIdentity") => return None,
        ("s3", "ListBuckets") => "ListAllMyBuckets",
        ("s3", "HeadBucket") => "ListBucket",
        ("s3", "ListObjectVersions") => "ListBucketVersions",
        ("s3", "DeleteObjects") => "DeleteObject",
        ("s3", "GetBucketEncryption") => "GetEncryptionConfiguration",
        ("s3", "PutBucketEncryption") => "PutEncryptionConfiguration",
        ("s3", "GetPublicAccessBlock") => "GetBucketPublicAccessBlock",
        ("s3", "PutPublicAccessBlock") => "PutBucketPublicAccessBlock",
        (_, name) => name,
    };
    Some(format!("{}:{renamed}", op.service))
}

/// Rust source as tokens: identifiers, `::`, and single punctuation characters, with
/// comments dropped and every string or character literal reduced to one `"` token.
fn tokens(src: &str) -> Vec<String> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            loop {
                if chars[i..].starts_with(&['/', '*']) {
                    depth += 1;
                    i += 2;
                } else if chars[i..].starts_with(&['*', '/']) {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == '"' {
            i = skip_string(&chars, i);
            out.push("\"".to_owned());
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{1F600}') or a lifetime ('a, 'static).
            if next == Some('\\') {
                i += 3;
                while chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
                out.push("\"".to_owned());
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push("\"".to_owned());
            } else {
                out.push("'".to_owned());
                i += 1;
            }
        } else if ident_char(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let raw_start = matches!(word.as_str(), "r" | "br" | "b" | "cr" | "c");
            if raw_start && matches!(chars.get(i), Some('"') | Some('#')) {
                i = skip_raw_string(&chars, i);
                out.push("\"".to_owned());
            } else {
                out.push(word);
            }
        } else if c == ':' && next == Some(':') {
            out.push("::".to_owned());
            i += 2;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// From the opening quote of a plain string to just past its closing one.
fn skip_string(chars: &[char], mut i: usize) -> usize {
    i += 1;
    while chars[i] != '"' {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i + 1
}

/// From the `#`s or quote after `r` to just past the matching `"#…`.
fn skip_raw_string(chars: &[char], mut i: usize) -> usize {
    let mut hashes = 0;
    while chars[i] == '#' {
        hashes += 1;
        i += 1;
    }
    if chars[i] != '"' {
        return i;
    }
    i += 1;
    loop {
        if chars[i] == '"' && chars[i + 1..].iter().take(hashes).all(|&c| c == '#') {
            return i + 1 + hashes;
        }
        i += 1;
    }
}

/// The SDK crate whose `Client` a file imports by that bare name, if any.
fn imported_client(t: &[String]) -> Option<String> {
    for (i, tok) in t.iter().enumerate() {
        let Some(krate) = tok.strip_prefix("aws_sdk_") else {
            continue;
        };
        if i == 0 || t[i - 1] != "use" {
            continue;
        }
        let mut depth = 0;
        for (j, item) in t.iter().enumerate().skip(i + 1) {
            match item.as_str() {
                ";" => break,
                "{" => depth += 1,
                "}" => depth -= 1,
                "Client" if depth == 1 || (depth == 0 && t[j - 1] == "::") => {
                    return Some(krate.to_owned())
                }
                _ => {}
            }
        }
    }
    None
}

/// Names bound to a client in this file, with the client's crate.
fn client_bindings(t: &[String]) -> BTreeMap<String, String> {
    let imported = imported_client(t);
    let mut bound = BTreeMap::new();
    let field = |name: &str| AWS_FIELDS.iter().find(|(f, _)| *f == name).map(|(_, k)| *k);
    for i in 0..t.len().saturating_sub(5) {
        let w = |k: usize| t[i + k].as_str();
        // `name: &Client` or `name: &aws_sdk_x::Client`
        if w(1) == ":" && w(2) == "&" {
            if w(3) == "Client" {
                if let Some(krate) = &imported {
                    bound.insert(t[i].clone(), krate.clone());
                }
            } else if let (Some(krate), "::", "Client") =
                (w(3).strip_prefix("aws_sdk_"), w(4), w(5))
            {
                bound.insert(t[i].clone(), krate.to_owned());
            }
        }
        // `let name = &aws.field;` or `let name = &self.aws.field;`
        if w(0) == "let" && w(2) == "=" && w(3) == "&" {
            let rest = &t[i + 4..];
            let path: Vec<&str> = rest
                .iter()
                .take_while(|s| *s != ";")
                .map(String::as_str)
                .collect();
            let last = path.last().copied().unwrap_or_default();
            let through_aws = path.len() >= 3 && path[path.len() - 3] == "aws";
            if let (true, Some(krate)) = (through_aws, field(last)) {
                bound.insert(t[i + 1].clone(), krate.to_owned());
            }
        }
    }
    bound
}

/// The operations called in one file, and how many `.send()` calls it has.
fn operations_in(src: &str) -> (Vec<Operation>, usize) {
    let t = tokens(src);
    let bound = client_bindings(&t);
    let mut ops = Vec::new();
    let mut push = |krate: &str, method: &str| {
        if !NOT_OPERATIONS.contains(&method) {
            ops.push(Operation {
                service: iam_prefix(krate),
                name: pascal_case(method),
            });
        }
    };
    let mut sends = 0;
    for i in 0..t.len().saturating_sub(3) {
        let w = |k: usize| t[i + k].as_str();
        if w(0) == "." && w(1) == "send" && w(2) == "(" && w(3) == ")" {
            sends += 1;
        }
        let method_call = w(1) == "." && w(3) == "(";
        if !method_call {
            continue;
        }
        let after_dot = i > 0 && t[i - 1] == ".";
        if let (false, Some(krate)) = (after_dot, bound.get(&t[i])) {
            push(krate, w(2));
        } else if after_dot && i >= 2 && matches!(t[i - 2].as_str(), "aws" | "self") {
            if let Some((_, krate)) = AWS_FIELDS.iter().find(|(f, _)| *f == t[i]) {
                push(krate, w(2));
            }
        }
    }
    (ops, sends)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every operation the worker's code calls, with the files that call it.
fn called_operations() -> BTreeMap<Operation, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut called: BTreeMap<Operation, BTreeSet<String>> = BTreeMap::new();
    let mut unseen = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(root)
            .expect("under the crate")
            .to_string_lossy()
            .replace('\\', "/");
        if DEV_ONLY.contains(&rel.as_str()) {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("read source");
        let (ops, sends) = operations_in(&src);
        if ops.len() != sends {
            unseen.push(format!(
                "{rel}: {sends} .send() calls but {} operations recognised",
                ops.len()
            ));
        }
        for op in ops {
            called.entry(op).or_default().insert(rel.clone());
        }
    }
    assert!(
        unseen.is_empty(),
        "the scanner cannot tell which client some calls go to; bind the client as \
         `aws.<field>`, `name: &Client` or `let name = &aws.<field>`, or teach this test:\n{}",
        unseen.join("\n")
    );
    called
}

/// Statement → action → the operations that need it.
type Grants = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn granted() -> Grants {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("terraform-modules/control-plane/worker-actions.json");
    let text = std::fs::read_to_string(&path).expect("read worker-actions.json");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("worker-actions.json is JSON");
    serde_json::from_value(doc["statements"].clone())
        .expect("`statements` maps each statement to {action: [operations]}")
}

#[test]
fn the_scanner_finds_calls_through_every_kind_of_client_binding() {
    let src = r#"
        use aws_sdk_s3::{types::Tag, Client};
        // aws.iam.delete_role() in a comment is no call
        async fn a(s3: &Client, other: &aws_sdk_ecs::Client, aws: &Aws) {
            let label = "aws.iam.create_role()";
            let c = 'x';
            s3.create_bucket().bucket(label).send().await;
            let req = other
                .list_services();
            req.send().await;
            aws.dynamodb.create_table().send().await;
            self.aws.logs.create_log_group().send().await;
            let elb = &aws.elb;
            elb.create_rule().send().await;
            let copy = s3.clone();
        }
    "#;
    let (ops, sends) = operations_in(src);
    let names: Vec<String> = ops.iter().map(ToString::to_string).collect();
    assert_eq!(
        names,
        [
            "s3:CreateBucket",
            "ecs:ListServices",
            "dynamodb:CreateTable",
            "logs:CreateLogGroup",
            "elasticloadbalancing:CreateRule",
        ]
    );
    assert_eq!(sends, 5);
}

#[test]
fn every_aws_operation_the_worker_calls_is_granted_by_the_control_plane_role() {
    let called = called_operations();
    // A scanner that found nothing would make this test pass vacuously.
    for service in [
        "s3",
        "dynamodb",
        "iam",
        "logs",
        "ecs",
        "elasticloadbalancing",
    ] {
        assert!(
            called.keys().any(|op| op.service == service),
            "no {service} call found in src/: is the scanner still seeing the clients?"
        );
    }
    let grants = granted();
    let mut missing = Vec::new();
    for (op, files) in &called {
        let Some(action) = action_for(op) else {
            continue;
        };
        let covered = grants
            .values()
            .filter_map(|actions| actions.get(&action))
            .any(|needs| needs.contains(&op.to_string()));
        if !covered {
            missing.push(format!("{action} (for {op}, called in {files:?})"));
        }
    }
    assert!(
        missing.is_empty(),
        "add these to terraform-modules/control-plane/worker-actions.json, in the statement \
         whose resources fit, listing the operation that needs each:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_granted_action_is_needed_by_an_operation_the_worker_still_calls() {
    let called: BTreeSet<String> = called_operations()
        .keys()
        .map(ToString::to_string)
        .collect();
    let mut stale = Vec::new();
    let mut seen = BTreeMap::new();
    for (statement, actions) in granted() {
        assert!(!actions.is_empty(), "statement {statement} grants nothing");
        for (action, needs) in actions {
            if let Some(other) = seen.insert(action.clone(), statement.clone()) {
                stale.push(format!(
                    "{action} is granted twice, in {other} and {statement}"
                ));
            }
            if needs.is_empty() {
                stale.push(format!(
                    "{action} in {statement} names no operation that needs it"
                ));
            }
            for op in needs.iter().filter(|op| !called.contains(*op)) {
                stale.push(format!("{action} in {statement}: {op} is no longer called"));
            }
        }
    }
    assert!(stale.is_empty(), "least privilege:\n{}", stale.join("\n"));
}

#[test]
fn every_statement_in_the_list_is_granted_by_the_control_plane_module() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("terraform-modules/control-plane");
    let mut hcl = String::new();
    for entry in std::fs::read_dir(&dir).expect("read control-plane/") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "tf") {
            hcl += &std::fs::read_to_string(&path).expect("read .tf");
        }
    }
    let ungranted: Vec<String> = granted()
        .into_keys()
        .filter(|sid| !hcl.contains(&format!("local.worker_actions[\"{sid}\"]")))
        .collect();
    assert!(
        ungranted.is_empty(),
        "statements in worker-actions.json that no policy statement in control-plane/ uses: {ungranted:?}"
    );
}
