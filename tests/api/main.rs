//! Integration tests: the real server on a loopback port, against a fresh Postgres
//! database per test.

mod auth;
mod cache;
mod cli;
mod contract;
mod errors;
mod fleet;
mod health;
mod helpers;
mod openapi;
mod patch;
mod reliability;
mod rollouts;
mod sizing;
mod tenants;
