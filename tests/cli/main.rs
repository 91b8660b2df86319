//! The `statehouse tenants …` client, run as a subprocess against a real server, worker and
//! emulator: what it prints, and how it exits.

#[path = "../support/moto.rs"]
mod moto;

mod bulk;
mod failures;
mod server;
mod sizing;
mod tenants;
