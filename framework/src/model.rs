//! What a service area declares: the collections it owns and their typed aspects.
//!
//! Services describe their business data here once; the framework derives routes,
//! representations, validation and the OpenAPI document from it.

use serde_json::{Map, Value};

use crate::aspect::{Aspect, AspectName, Invalid, Selection, UniqueKey};

/// A service area: a name (used in media types, `application/vnd.{sa}.v1+xml`) and what it
/// owns.
#[derive(Debug, Clone)]
pub struct ServiceArea {
    name: String,
    owned: Vec<Collection>,
}

impl ServiceArea {
    /// Starts a service area; `name` is a lower-case word such as `registration`.
    ///
    /// ```
    /// use hiscale::{Collection, ServiceArea};
    /// let sa = ServiceArea::new("registration").owns(Collection::new("customers", "customer"));
    /// assert_eq!(sa.name(), "registration");
    /// ```
    pub fn new(name: &str) -> Self {
        assert!(
            is_identifier(name),
            "service area name {name:?} is not a lower-case word"
        );
        Self {
            name: name.to_owned(),
            owned: Vec::new(),
        }
    }

    /// Declares a collection this SA owns (writes it, serves its feed).
    pub fn owns(mut self, collection: Collection) -> Self {
        self.owned.push(collection);
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn owned(&self) -> &[Collection] {
        &self.owned
    }
}

/// A collection of resources (`customers`) whose items (`customer`) are split into aspects.
#[derive(Debug, Clone)]
pub struct Collection {
    name: String,
    item: String,
    aspects: Vec<AspectDef>,
    names: Vec<AspectName>,
}

impl Collection {
    /// `name` is the path segment and XML root of the feed, `item` the element of one resource.
    pub fn new(name: &str, item: &str) -> Self {
        assert!(
            is_identifier(name),
            "collection name {name:?} is not a lower-case word"
        );
        assert!(
            is_identifier(item),
            "item name {item:?} is not a lower-case word"
        );
        Self {
            name: name.to_owned(),
            item: item.to_owned(),
            aspects: Vec::new(),
            names: Vec::new(),
        }
    }

    /// Declares a simple aspect such as `person`.
    pub fn aspect<A: Aspect>(self, name: &str) -> Self {
        self.declare::<A>(name, None)
    }

    /// Declares qualified aspects `family.q` for each qualifier, grouped in XML and JSON
    /// under `container` (`<addresses><address type="home">`).
    pub fn qualified<A: Aspect>(
        mut self,
        family: &str,
        container: &str,
        qualifiers: &[&str],
    ) -> Self {
        assert!(
            is_identifier(container),
            "container {container:?} is not a lower-case word"
        );
        for qualifier in qualifiers {
            self = self.declare::<A>(&format!("{family}.{qualifier}"), Some(container));
        }
        self
    }

    fn declare<A: Aspect>(mut self, name: &str, container: Option<&str>) -> Self {
        let parsed = AspectName::parse(name);
        assert!(parsed.is_ok(), "aspect name {name:?} is not valid");
        let Ok(name) = parsed else { return self };
        assert!(!self.names.contains(&name), "aspect {name} declared twice");
        self.names.push(name.clone());
        self.aspects.push(AspectDef {
            name,
            container: container.map(str::to_owned),
            xml_attributes: A::XML_ATTRIBUTES,
            accept: accept_erased::<A>,
            input_schema: schema_of::<A::Input>,
            stored_schema: schema_of::<A>,
        });
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn item(&self) -> &str {
        &self.item
    }

    pub fn aspects(&self) -> &[AspectDef] {
        &self.aspects
    }

    pub fn aspect_names(&self) -> &[AspectName] {
        &self.names
    }

    pub fn find(&self, name: &AspectName) -> Option<&AspectDef> {
        self.aspects.iter().find(|aspect| aspect.name == *name)
    }

    /// Every declared aspect.
    pub fn everything(&self) -> Selection {
        Selection::all(&self.names)
    }
}

/// One declared aspect with its type erased, so collections can hold many kinds.
#[derive(Debug, Clone)]
pub struct AspectDef {
    pub name: AspectName,
    /// For qualified aspects: the grouping element (`addresses`).
    pub container: Option<String>,
    pub xml_attributes: &'static [&'static str],
    accept: fn(Map<String, Value>) -> Result<Accepted, Invalid>,
    input_schema: fn() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    stored_schema: fn() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
}

/// A validated aspect, ready to be stored.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The stored document (a JSON object of the aspect's fields, no version).
    pub body: Value,
    pub unique_keys: Vec<UniqueKey>,
}

impl AspectDef {
    /// Runs the aspect's typed validation on wire fields. CPU-heavy for some aspects
    /// (password hashing): call it from a blocking thread.
    pub fn accept(&self, fields: Map<String, Value>) -> Result<Accepted, Invalid> {
        (self.accept)(fields)
    }

    pub fn input_schema(&self) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        (self.input_schema)()
    }

    pub fn stored_schema(&self) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        (self.stored_schema)()
    }
}

fn accept_erased<A: Aspect>(fields: Map<String, Value>) -> Result<Accepted, Invalid> {
    let input: A::Input = serde_json::from_value(Value::Object(fields))
        .map_err(|error| Invalid::new("invalid-aspect", error.to_string()))?;
    let stored = A::accept(input)?;
    let unique_keys = stored.unique_keys();
    let body = serde_json::to_value(&stored)
        .map_err(|error| Invalid::new("invalid-aspect", error.to_string()))?;
    Ok(Accepted { body, unique_keys })
}

fn schema_of<T: utoipa::ToSchema>() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    T::schema()
}

/// Lower-case ASCII word: safe as a path segment, XML name and SQL identifier suffix.
fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= 40
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
