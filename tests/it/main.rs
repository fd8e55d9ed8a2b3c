//! Integration tests: the registration SA on SQLite and PostgreSQL, in-process and as real
//! unit processes.
#![allow(clippy::unwrap_used, clippy::panic)]

mod assumptions;
mod batch;
mod bounds;
mod concurrency;
mod copies;
mod copy_access;
mod crash;
mod datacenters;
mod demo;
mod errors;
mod failover;
mod feed;
mod gui;
mod haproxy;
mod interfaces;
mod kubernetes;
mod lease;
mod operations;
mod orders;
mod origins;
mod outage;
mod purge;
mod resource;
mod restore;
mod resync;
mod rollback;
mod rolling_upgrade;
mod sessions;
mod soak;
mod tidy;
mod tls;
mod topology;
mod typed;
mod write_answers;
