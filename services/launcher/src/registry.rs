//! The service areas this binary runs: one line per SA, the one place to add a fifth (its crate
//! joins the workspace and this list; nothing else in the launcher changes).
//!
//! Each entry says what the SA declares (its collections and copies) and which routes it adds
//! beside the framework's. The deployment — units, databases, sources, grants — is in the
//! topology file, checked against these declarations before anything starts.

use hiscale::http::Routes;
use hiscale::{ServiceArea, UnitConfig};

/// One service area this binary can run.
pub struct Registered {
    /// The SA's declaration.
    pub declare: fn() -> ServiceArea,
    /// The routes a unit of the SA adds, built from its configuration.
    pub routes: fn(&UnitConfig) -> Result<Routes, String>,
}

/// Every service area of this binary.
pub const SERVICE_AREAS: &[Registered] = &[
    Registered {
        declare: registration::service_area,
        routes: framework_routes_only,
    },
    Registered {
        declare: login::service_area,
        routes: login::unit_routes,
    },
    Registered {
        declare: shop::service_area,
        routes: framework_routes_only,
    },
    Registered {
        declare: billing::service_area,
        routes: framework_routes_only,
    },
];

/// For an SA that adds no routes of its own.
fn framework_routes_only(_: &UnitConfig) -> Result<Routes, String> {
    Ok(Routes::new())
}

/// Every service area's declaration.
pub fn service_areas() -> Vec<ServiceArea> {
    SERVICE_AREAS.iter().map(|sa| (sa.declare)()).collect()
}

/// The registered SA called `name`, with its declaration.
pub fn find(name: &str) -> Option<(&'static Registered, ServiceArea)> {
    SERVICE_AREAS
        .iter()
        .map(|registered| (registered, (registered.declare)()))
        .find(|(_, sa)| sa.name() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_only_login_adds_routes_needing_a_key() {
        let mut names: Vec<String> = service_areas()
            .iter()
            .map(|sa| sa.name().to_owned())
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "an SA is registered twice");
        for registered in SERVICE_AREAS {
            let sa = (registered.declare)();
            let config =
                UnitConfig::new(sa.name(), "u-1", ([127, 0, 0, 1], 1).into(), "sqlite://x");
            let routes = (registered.routes)(&config);
            assert_eq!(routes.is_err(), sa.name() == login::NAME, "{}", sa.name());
        }
    }
}
