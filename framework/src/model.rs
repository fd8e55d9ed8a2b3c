//! What a service area declares: the collections it owns and their typed aspects.
//!
//! Services describe their business data here once; the framework derives routes,
//! representations, validation and the OpenAPI document from it.

use std::sync::Arc;

use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use crate::aspect::{Aspect, AspectName, Invalid, Selection, UniqueKey};
use crate::codes;
use crate::shape::Shape;

/// A service area: a name (used in media types, `application/vnd.{sa}.v1+xml`), what it owns
/// and what it keeps copies of.
#[derive(Debug, Clone)]
pub struct ServiceArea {
    name: String,
    owned: Vec<Collection>,
    copied: Vec<Collection>,
}

/// Whether a unit writes a collection or keeps a read-only copy of another SA's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Owner,
    /// A copy of the collection owned by the named SA.
    Copy {
        owner: String,
    },
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
            copied: Vec::new(),
        }
    }

    /// Declares a collection this SA owns (writes it, serves its feed).
    pub fn owns(mut self, mut collection: Collection) -> Self {
        collection.role = Role::Owner;
        collection.owner = self.name.clone();
        self.owned.push(collection);
        self
    }

    /// Declares a read-only copy of `owner`'s collection: just the aspects declared on it,
    /// kept by polling the owner's feed, served under the owner's media types.
    pub fn copies(mut self, owner: &str, mut collection: Collection) -> Self {
        assert!(
            is_identifier(owner),
            "owner name {owner:?} is not a lower-case word"
        );
        collection.role = Role::Copy {
            owner: owner.to_owned(),
        };
        collection.owner = owner.to_owned();
        self.copied.push(collection);
        self
    }

    /// Collections this SA keeps copies of.
    pub fn copied(&self) -> &[Collection] {
        &self.copied
    }

    /// Every collection this SA serves, owned first.
    pub fn collections(&self) -> impl Iterator<Item = &Collection> {
        self.owned.iter().chain(&self.copied)
    }

    /// The collection served under `name`, owned or copied.
    pub fn collection(&self, name: &str) -> Option<&Collection> {
        self.collections()
            .find(|collection| collection.name() == name)
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
    unique_fields: Vec<UniqueField>,
    role: Role,
    owner: String,
}

/// A field whose value at most one resource may hold (compared case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueField {
    pub aspect: AspectName,
    pub field: &'static str,
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
            unique_fields: Vec::new(),
            role: Role::Owner,
            owner: String::new(),
        }
    }

    /// Declares an aspect of a copy: a document whose rules are the owner's business, so it
    /// has no type here, only its XML attributes.
    pub fn document(self, name: &str, xml_attributes: &'static [&'static str]) -> Self {
        self.declare(name, None, Kind::document(xml_attributes))
    }

    /// Declares qualified document aspects of a copy, grouped under `container`.
    pub fn qualified_documents(self, family: &str, container: &str, qualifiers: &[&str]) -> Self {
        self.declare_qualified(family, container, qualifiers, Kind::document(&[]))
    }

    /// Makes `field` of `aspect` unique across the collection (e.g. a login): the owner refuses
    /// a second holder with `409`, and every store can find the holder by value.
    pub fn unique(mut self, aspect: &str, field: &'static str) -> Self {
        let parsed = AspectName::parse(aspect)
            .ok()
            .filter(|name| self.names.contains(name));
        assert!(
            parsed.is_some(),
            "unique field on undeclared aspect {aspect:?}"
        );
        if let Some(aspect) = parsed {
            self.unique_fields.push(UniqueField { aspect, field });
        }
        self
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The SA that owns this collection (names its media types).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    pub fn unique_fields(&self) -> &[UniqueField] {
        &self.unique_fields
    }

    /// The unique values an aspect document holds, normalised to lower case.
    pub fn unique_keys(&self, aspect: &AspectName, body: &Value) -> Vec<UniqueKey> {
        self.unique_fields
            .iter()
            .filter(|unique| unique.aspect == *aspect)
            .filter_map(|unique| {
                body.get(unique.field)
                    .and_then(Value::as_str)
                    .map(|value| UniqueKey {
                        name: unique.field,
                        value: value.to_lowercase(),
                    })
            })
            .collect()
    }

    /// Declares a simple aspect such as `person`.
    pub fn aspect<A: Aspect>(self, name: &str) -> Self {
        self.declare(name, None, Kind::of::<A>())
    }

    /// Declares qualified aspects `family.q` for each qualifier, grouped in XML and JSON
    /// under `container` (`<addresses><address type="home">`).
    pub fn qualified<A: Aspect>(self, family: &str, container: &str, qualifiers: &[&str]) -> Self {
        self.declare_qualified(family, container, qualifiers, Kind::of::<A>())
    }

    fn declare_qualified(
        mut self,
        family: &str,
        container: &str,
        qualifiers: &[&str],
        kind: Kind,
    ) -> Self {
        assert!(
            is_identifier(container),
            "container {container:?} is not a lower-case word"
        );
        for qualifier in qualifiers {
            self = self.declare(
                &format!("{family}.{qualifier}"),
                Some(container),
                kind.clone(),
            );
        }
        self
    }

    fn declare(mut self, name: &str, container: Option<&str>, kind: Kind) -> Self {
        let parsed = AspectName::parse(name);
        assert!(parsed.is_ok(), "aspect name {name:?} is not valid");
        let Ok(name) = parsed else { return self };
        assert!(!self.names.contains(&name), "aspect {name} declared twice");
        self.names.push(name.clone());
        self.aspects.push(AspectDef {
            name,
            container: container.map(str::to_owned),
            xml_attributes: kind.xml_attributes,
            accept: kind.accept,
            input_schema: kind.input_schema,
            stored_schema: kind.stored_schema,
            schemas: kind.schemas,
            example: kind.example,
            shape: kind.shape.clone(),
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

/// The component schemas a schema's `$ref`s name (`ToSchema::schemas`).
type Schemas = fn(&mut Vec<(String, RefOr<Schema>)>);

/// What a kind of aspect brings, its type erased: typed aspects validate, documents of a copy
/// refuse writes.
#[derive(Clone)]
struct Kind {
    xml_attributes: &'static [&'static str],
    accept: fn(Map<String, Value>) -> Result<Accepted, Invalid>,
    input_schema: fn() -> RefOr<Schema>,
    stored_schema: fn() -> RefOr<Schema>,
    schemas: Schemas,
    example: fn() -> Option<Value>,
    /// The input's shape, built once here: XML parsing and the field check use it per request.
    shape: Arc<Shape>,
}

impl Kind {
    fn of<A: Aspect>() -> Self {
        Self {
            xml_attributes: A::XML_ATTRIBUTES,
            accept: accept_erased::<A>,
            input_schema: schema_of::<A::Input>,
            stored_schema: schema_of::<A>,
            schemas: schemas_of::<A>,
            example: A::example,
            shape: Arc::new(Shape::of::<A::Input>()),
        }
    }

    fn document(xml_attributes: &'static [&'static str]) -> Self {
        Self {
            xml_attributes,
            accept: refuse_writes,
            input_schema: schema_of::<Value>,
            stored_schema: schema_of::<Value>,
            schemas: |_| {},
            example: || None,
            shape: Arc::new(Shape::Any),
        }
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
    input_schema: fn() -> RefOr<Schema>,
    stored_schema: fn() -> RefOr<Schema>,
    schemas: Schemas,
    example: fn() -> Option<Value>,
    shape: Arc<Shape>,
}

/// A validated aspect, ready to be stored.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The stored document (a JSON object of the aspect's fields, no version).
    pub body: Value,
}

impl AspectDef {
    /// Runs the aspect's typed validation on wire fields. CPU-heavy for some aspects
    /// (password hashing): call it from a blocking thread.
    ///
    /// Fields of the wrong JSON type for the input's shape (a decimal as a JSON number, text
    /// where an integer belongs) are `invalid-field` naming the field, whether they came as
    /// JSON or as XML the parser could not coerce; what serde then refuses is `invalid-aspect`.
    pub fn accept(&self, fields: Map<String, Value>) -> Result<Accepted, Invalid> {
        for (name, value) in &fields {
            self.shape
                .field(name)
                .check(value, name)
                .map_err(|(path, expected)| {
                    Invalid::new(
                        codes::INVALID_FIELD,
                        format!("field '{path}' of {} must be {expected}", self.name),
                    )
                })?;
        }
        (self.accept)(fields)
    }

    pub fn input_schema(&self) -> RefOr<Schema> {
        (self.input_schema)()
    }

    pub fn stored_schema(&self) -> RefOr<Schema> {
        (self.stored_schema)()
    }

    /// The component schemas the input and stored schemas refer to (`$ref`), by name.
    pub fn component_schemas(&self) -> Vec<(String, RefOr<Schema>)> {
        let mut schemas = Vec::new();
        (self.schemas)(&mut schemas);
        schemas
    }

    /// An input the aspect accepts, for the OpenAPI document: [`Aspect::example`], else the
    /// input schema's own example.
    pub fn example(&self) -> Option<Value> {
        (self.example)().or_else(|| crate::shape::schema_example(&self.input_schema()))
    }

    /// The shape of the input's fields (`Any` for a copy's documents).
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
}

fn accept_erased<A: Aspect>(fields: Map<String, Value>) -> Result<Accepted, Invalid> {
    // The path names the field serde refused (`lines[0].price.amount: …`).
    let input: A::Input = serde_path_to_error::deserialize(Value::Object(fields))
        .map_err(|error| Invalid::new(codes::INVALID_ASPECT, error.to_string()))?;
    let stored = A::accept(input)?;
    let body = serde_json::to_value(&stored)
        .map_err(|error| Invalid::new(codes::INVALID_ASPECT, error.to_string()))?;
    Ok(Accepted { body })
}

/// Copies are read-only; the HTTP edge refuses writes before this could ever run.
fn refuse_writes(_: Map<String, Value>) -> Result<Accepted, Invalid> {
    Err(Invalid::new(
        codes::READ_ONLY_COPY,
        "aspects of a copy are written at their owner",
    ))
}

fn schema_of<T: utoipa::ToSchema>() -> RefOr<Schema> {
    T::schema()
}

fn schemas_of<A: Aspect>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    <A as utoipa::ToSchema>::schemas(schemas);
    <A::Input as utoipa::ToSchema>::schemas(schemas);
}

/// Lower-case ASCII word: safe as a path segment, XML name and SQL identifier suffix.
fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    text.len() <= 40
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
