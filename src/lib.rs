//! statehouse: a control plane that gives every US state its own isolated copy of an
//! application on AWS.

pub mod auth;
pub mod aws;
pub mod cells;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod domain;
pub mod health;
pub mod http;
pub mod metrics;
pub mod reconcile;
pub mod sizing;
pub mod telemetry;
pub mod worker;
