//! HiScale REST: a framework for highly available, scalable REST service landscapes.
//!
//! A service area declares what it owns ([`ServiceArea`], [`Collection`], typed [`Aspect`]s);
//! the framework gives it a versioned store on SQLite or PostgreSQL, the REST interface in XML
//! and JSON with interface versions, grants, health, metrics and the OpenAPI document.

pub mod aspect;
pub(crate) mod assumptions;
pub mod auth;
mod batch;
pub mod business;
pub mod codes;
pub mod config;
#[cfg(feature = "emulation")]
pub mod emulation;
pub mod facade;
#[doc = include_str!("../../docs/guide.md")]
pub mod guide {}
pub(crate) mod gate;
pub mod gui;
pub mod http;
pub mod interface;
pub mod model;
pub mod openapi;
pub mod origin;
pub mod poller;
pub mod replication;
pub mod repr;
pub mod restore;
pub mod revocation;
pub mod session;
pub mod shape;
pub mod store;
pub(crate) mod telemetry;
pub mod tls;
pub mod topology;
pub mod types;
pub mod unit;
pub mod version;

pub use aspect::{Aspect, AspectName, AspectSelector, Invalid, Selection, UniqueKey};
pub use business::{Changed, Context, Draft, Refusal};
pub use config::UnitConfig;
pub use model::{Collection, Ownership, ServiceArea};
pub use origin::Origin;
pub use store::Store;
pub use version::{ResourceId, Version};

/// The test kit (feature `testing`): it drives a unit's HTTP edge in process, so it lives there.
#[cfg(feature = "testing")]
pub use http::testing;
