//! The shape of an aspect's fields, derived once from its `utoipa` schema at declaration.
//!
//! XML carries only text and nesting; JSON carries types. A [`Shape`] is what it takes to
//! turn XML into the JSON an aspect's serde type expects (text `3` into the number `3`, the
//! children of `<lines>` into an array), and to refuse a JSON value of the wrong type with
//! `invalid-field` naming the field, so both formats fail alike before serde sees them. It is
//! built once per declared aspect (resolving `$ref`s through `ToSchema::schemas`), never per
//! request.

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{AdditionalProperties, ArrayItems, Schema, SchemaType, Type};

/// How deep a shape is followed; beyond (recursive types) anything is accepted and serde
/// decides. Deeper than any body the parse limits let through.
const MAX_SHAPE_DEPTH: usize = 16;

/// What a value must look like, as far as the wire formats care.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Shape {
    /// Anything (no schema, a free-form value, or too deep to follow).
    #[default]
    Any,
    Null,
    /// Text, including enumerations and the string types of [`crate::types`].
    String,
    Integer,
    Number,
    Boolean,
    /// A list whose items have the inner shape.
    Array(Box<Shape>),
    /// A record: its declared fields, and the shape of any other member (maps).
    Object {
        fields: Vec<(String, Shape)>,
        other: Box<Shape>,
    },
    /// One of several shapes (`Option<T>` is `T` or `Null`).
    Either(Vec<Shape>),
}

/// The schemas a `$ref` may name, by component name.
pub type Components = HashMap<String, RefOr<Schema>>;

impl Shape {
    /// The shape of `T`'s schema, its references resolved through `T::schemas`.
    pub fn of<T: utoipa::ToSchema>() -> Shape {
        let mut named = Vec::new();
        T::schemas(&mut named);
        let components: Components = named.into_iter().collect();
        Shape::from_schema(&T::schema(), &components, 0)
    }

    /// The shape of one schema, `$ref`s looked up in `components` (unknown ones are `Any`).
    pub fn from_schema(schema: &RefOr<Schema>, components: &Components, depth: usize) -> Shape {
        if depth > MAX_SHAPE_DEPTH {
            return Shape::Any;
        }
        let schema = match schema {
            RefOr::Ref(reference) => {
                let name = reference
                    .ref_location
                    .rsplit('/')
                    .next()
                    .unwrap_or_default();
                match components.get(name) {
                    Some(found) => return Shape::from_schema(found, components, depth + 1),
                    None => return Shape::Any,
                }
            }
            RefOr::T(schema) => schema,
        };
        let next = |schema: &RefOr<Schema>| Shape::from_schema(schema, components, depth + 1);
        match schema {
            Schema::Array(array) => {
                let items = match &array.items {
                    ArrayItems::RefOrSchema(items) => next(items),
                    ArrayItems::False => Shape::Any,
                };
                with_types(Shape::Array(Box::new(items)), &array.schema_type)
            }
            Schema::Object(object) => {
                let fields = object
                    .properties
                    .iter()
                    .map(|(name, schema)| (name.clone(), next(schema)))
                    .collect::<Vec<_>>();
                let other = match object.additional_properties.as_deref() {
                    Some(AdditionalProperties::RefOr(schema)) => next(schema),
                    _ => Shape::Any,
                };
                let object_shape = Shape::Object {
                    fields,
                    other: Box::new(other),
                };
                match &object.schema_type {
                    SchemaType::AnyValue => Shape::Any,
                    SchemaType::Type(kind) => scalar(kind.clone(), object_shape),
                    SchemaType::Array(kinds) => either(
                        kinds
                            .iter()
                            .map(|kind| scalar(kind.clone(), object_shape.clone()))
                            .collect(),
                    ),
                }
            }
            Schema::OneOf(one) => either(one.items.iter().map(next).collect()),
            Schema::AnyOf(any) => either(any.items.iter().map(next).collect()),
            Schema::AllOf(all) => {
                let parts: Vec<Shape> = all.items.iter().map(next).collect();
                merge_all(parts)
            }
            // `Schema` is non-exhaustive: a kind we do not know accepts anything.
            #[allow(unreachable_patterns)]
            _ => Shape::Any,
        }
    }

    /// The shape of the member `name` of an object shape (`Any` when not declared).
    pub fn field(&self, name: &str) -> Cow<'_, Shape> {
        match self {
            Shape::Object { fields, other } => fields
                .iter()
                .find(|(field, _)| field == name)
                .map(|(_, shape)| Cow::Borrowed(shape))
                .unwrap_or(Cow::Borrowed(other)),
            Shape::Either(alternatives) => alternatives
                .iter()
                .find(|shape| matches!(shape, Shape::Object { .. }))
                .map(|shape| shape.field(name))
                .unwrap_or(Cow::Owned(Shape::Any)),
            _ => Cow::Owned(Shape::Any),
        }
    }

    /// Whether a JSON value fits; otherwise the path of the first misfit under `path` and what
    /// was expected there. Members the shape does not declare are left to serde.
    pub fn check(&self, value: &Value, path: &str) -> Result<(), (String, &'static str)> {
        let misfit = || Err((path.to_owned(), self.expected()));
        match (self, value) {
            (Shape::Any, _)
            | (Shape::Null, Value::Null)
            | (Shape::String, Value::String(_))
            | (Shape::Boolean, Value::Bool(_))
            | (Shape::Number, Value::Number(_)) => Ok(()),
            (Shape::Integer, Value::Number(number)) if number.is_i64() || number.is_u64() => Ok(()),
            (Shape::Array(item), Value::Array(items)) => {
                for (index, value) in items.iter().enumerate() {
                    item.check(value, &format!("{path}[{index}]"))?;
                }
                Ok(())
            }
            (Shape::Object { .. }, Value::Object(members)) => {
                for (name, value) in members {
                    self.field(name).check(value, &join(path, name))?;
                }
                Ok(())
            }
            (Shape::Either(alternatives), value) => {
                let mut first = None;
                for alternative in alternatives {
                    match alternative.check(value, path) {
                        Ok(()) => return Ok(()),
                        Err(error) => {
                            first.get_or_insert(error);
                        }
                    }
                }
                Err(first.unwrap_or_else(|| (path.to_owned(), "a value")))
            }
            _ => misfit(),
        }
    }

    /// What a value of this shape is, for error messages.
    pub fn expected(&self) -> &'static str {
        match self {
            Shape::Any => "a value",
            Shape::Null => "null",
            Shape::String => "a string",
            Shape::Integer => "an integer",
            Shape::Number => "a number",
            Shape::Boolean => "true or false",
            Shape::Array(_) => "a list",
            Shape::Object { .. } => "an object",
            Shape::Either(_) => "one of several shapes",
        }
    }
}

/// `a.b`, or `b` at the top.
pub fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// The element name of one item of the list field `field` in XML: the field's singular by a
/// fixed, shape-free rule, so a copy without types renders exactly what the owner parses.
///
/// * ends in `ies` → `y` (`entries` → `entry`)
/// * ends in `sses`, `xes`, `ches` or `shes` → without `es` (`addresses` → `address`,
///   `boxes` → `box`)
/// * ends in `s` (not `ss`) → without `s` (`lines` → `line`)
/// * anything else → `item` (`history` → `item`, and the items of a list in a list)
///
/// ```
/// use hiscale::shape::list_item_name;
/// assert_eq!(list_item_name("lines"), "line");
/// assert_eq!(list_item_name("entries"), "entry");
/// assert_eq!(list_item_name("addresses"), "address");
/// assert_eq!(list_item_name("history"), "item");
/// ```
pub fn list_item_name(field: &str) -> Cow<'static, str> {
    let singular = if let Some(stem) = field.strip_suffix("ies") {
        format!("{stem}y")
    } else if ["sses", "xes", "ches", "shes"]
        .iter()
        .any(|suffix| field.ends_with(suffix))
    {
        field[..field.len() - 2].to_owned()
    } else if field.ends_with('s') && !field.ends_with("ss") {
        field[..field.len() - 1].to_owned()
    } else {
        return Cow::Borrowed("item");
    };
    if singular.is_empty() {
        return Cow::Borrowed("item");
    }
    Cow::Owned(singular)
}

/// A schema's `type` when it is not just `object`: a scalar, or `[T, "null"]` as [`Shape::Either`].
fn scalar(kind: Type, object: Shape) -> Shape {
    match kind {
        Type::Object => object,
        Type::String => Shape::String,
        Type::Integer => Shape::Integer,
        Type::Number => Shape::Number,
        Type::Boolean => Shape::Boolean,
        Type::Array => Shape::Array(Box::new(Shape::Any)),
        Type::Null => Shape::Null,
        #[allow(unreachable_patterns)]
        _ => Shape::Any,
    }
}

/// An array schema whose `type` also admits `null` (`Option<Vec<T>>`).
fn with_types(array: Shape, types: &SchemaType) -> Shape {
    match types {
        SchemaType::Array(kinds) if kinds.contains(&Type::Null) => {
            Shape::Either(vec![array, Shape::Null])
        }
        _ => array,
    }
}

/// One shape for several: a single one stays itself.
fn either(mut shapes: Vec<Shape>) -> Shape {
    if shapes.len() == 1 {
        return shapes.pop().unwrap_or_default();
    }
    if shapes.contains(&Shape::Any) {
        return Shape::Any;
    }
    Shape::Either(shapes)
}

/// `allOf`: the fields of every object part together; otherwise the first part.
fn merge_all(parts: Vec<Shape>) -> Shape {
    if parts.len() == 1 || !parts.iter().all(|p| matches!(p, Shape::Object { .. })) {
        return parts.into_iter().next().unwrap_or_default();
    }
    let mut merged = Vec::new();
    for part in parts {
        if let Shape::Object { fields, .. } = part {
            merged.extend(fields);
        }
    }
    Shape::Object {
        fields: merged,
        other: Box::new(Shape::Any),
    }
}

/// The example a schema carries (`example`, else the first of `examples`), if any.
pub fn schema_example(schema: &RefOr<Schema>) -> Option<Value> {
    match schema {
        RefOr::T(Schema::Object(object)) => object
            .example
            .clone()
            .or_else(|| object.examples.first().cloned()),
        RefOr::T(Schema::Array(array)) => array
            .example
            .clone()
            .or_else(|| array.examples.first().cloned()),
        _ => None,
    }
}
