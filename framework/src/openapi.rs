//! The OpenAPI document, derived from what the service area declares, so it can never list a
//! route or an aspect the unit does not have.

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    Required, ResponseBuilder,
};

use serde_json::{Map, Value};

use crate::model::{Collection, Role, ServiceArea};
use crate::repr::{self, Format};

/// A whole resource to create, in JSON, from the aspects' examples (qualified ones grouped
/// under their container); `None` when no aspect has one.
pub fn examples(collection: &Collection) -> Option<Value> {
    let mut root = Map::new();
    for aspect in collection.aspects() {
        let Some(example) = aspect.example() else {
            continue;
        };
        match (&aspect.container, aspect.name.qualifier()) {
            (Some(container), Some(qualifier)) => {
                if let Value::Object(group) = root
                    .entry(container.clone())
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    group.insert(qualifier.to_owned(), example);
                }
            }
            _ => {
                root.insert(aspect.name.to_string(), example);
            }
        }
    }
    (!root.is_empty()).then_some(Value::Object(root))
}

/// Builds the document for a service area's unit, as interface v1 shows it.
pub fn document(sa: &ServiceArea) -> OpenApi {
    document_for(sa, 1)
}

/// Builds the document of interface `version` (`/v{N}/openapi.json`): its media types, and
/// the aspects as that version's facades show them.
pub fn document_for(sa: &ServiceArea, version: u32) -> OpenApi {
    let sa = &sa.as_version(version);
    let mut paths = PathsBuilder::new();
    let mut components = ComponentsBuilder::new().security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    for collection in sa.collections() {
        let mut resource = ObjectBuilder::new()
            .property("id", ObjectBuilder::new().schema_type(Type::String))
            .property("version", ObjectBuilder::new().schema_type(Type::Integer));
        let mut input = ObjectBuilder::new();
        // Qualified aspects sit under their container, keyed by qualifier, as on the wire.
        let mut groups: Vec<(String, ObjectBuilder, ObjectBuilder)> = Vec::new();
        for aspect in collection.aspects() {
            let stored = format!(
                "{}_{}",
                collection.item(),
                aspect.name.to_string().replace('.', "_")
            );
            let written = format!("{stored}_input");
            // The schemas the aspect's `$ref`s name (`Money`, `Line`, …), so none dangles.
            components = components
                .schemas_from_iter(aspect.component_schemas())
                .schema(stored.clone(), aspect.shown_schema())
                .schema(written.clone(), aspect.input_schema());
            match (&aspect.container, aspect.name.qualifier()) {
                (Some(container), Some(qualifier)) => {
                    let position = match groups.iter().position(|(name, ..)| name == container) {
                        Some(position) => position,
                        None => {
                            groups.push((
                                container.clone(),
                                ObjectBuilder::new(),
                                ObjectBuilder::new(),
                            ));
                            groups.len() - 1
                        }
                    };
                    if let Some((_, stored_group, input_group)) = groups.get_mut(position) {
                        *stored_group = std::mem::take(stored_group)
                            .property(qualifier, Ref::from_schema_name(stored));
                        *input_group = std::mem::take(input_group)
                            .property(qualifier, Ref::from_schema_name(written));
                    }
                }
                _ => {
                    resource =
                        resource.property(aspect.name.to_string(), Ref::from_schema_name(stored));
                    input = input.property(aspect.name.to_string(), Ref::from_schema_name(written));
                }
            }
        }
        for (container, stored_group, input_group) in groups {
            resource = resource.property(container.clone(), stored_group);
            input = input.property(container, input_group);
        }
        let item = collection.item().to_owned();
        components = components
            .schema(item.clone(), resource)
            .schema(format!("{item}_input"), input);
        paths = collection_paths(paths, collection, version);
    }
    for (path, summary) in [
        ("/health", "PASS or FAIL with reasons (HAProxy's check)"),
        ("/heartbeat", "the unit's id and reader role"),
        ("/metrics", "Prometheus metrics"),
        (
            "/admin/consumers",
            "(operator) each consumer's last polled version and lag",
        ),
        (
            "/admin/replication",
            "(operator) per source: cursor, lag, role, polling or standing by",
        ),
        (
            "/admin/interfaces",
            "(operator) interface versions and their states",
        ),
        (
            "/admin/restore",
            "(operator) owned collections in restoring state (POST enters it, DELETE continues past every version a consumer reported)",
        ),
    ] {
        let operation = OperationBuilder::new()
            .summary(Some(summary))
            .response("200", ResponseBuilder::new().description(summary));
        paths = paths.path(path, PathItem::new(HttpMethod::Get, operation));
    }
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(format!("HiScale REST: {}", sa.name()))
                .version(format!("v{version}"))
                .description(Some(format!(
                    "Interface versions by media type application/vnd.{}.v{{N}}+xml|json or URL prefix /v{{N}}/. \
                     Errors are <error><code>…</code><message>…</message></error> or {{\"error\":{{\"code\",\"message\"}}}}.",
                    sa.name()
                ))),
        )
        .paths(paths.build())
        .components(Some(components.build()))
        .security(Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]))
        .build()
}

fn collection_paths(paths: PathsBuilder, collection: &Collection, version: u32) -> PathsBuilder {
    let media =
        |format: &str| format!("application/vnd.{}.v{version}+{format}", collection.owner());
    let item_ref = || Ref::from_schema_name(collection.item());
    let body = |status: &str, description: &str| {
        ResponseBuilder::new()
            .description(format!("{status}: {description}"))
            .content(
                media("xml"),
                ContentBuilder::new().schema(Some(item_ref())).build(),
            )
            .content(
                media("json"),
                ContentBuilder::new().schema(Some(item_ref())).build(),
            )
    };
    let plain = |description: &str| ResponseBuilder::new().description(description);
    let path_parameter = |name: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
    };
    let errors = |operation: OperationBuilder| {
        operation
            .response("400", plain("bad input (stable code in the error body)"))
            .response("401", plain("no or unknown bearer token"))
            .response("403", plain("outside the caller's grant"))
            .response("406", plain("unknown interface version or format"))
    };
    let name = collection.name();
    let example = examples(collection);
    let input_content = |format: &str| {
        let mut content = ContentBuilder::new().schema(Some(Ref::from_schema_name(format!(
            "{}_input",
            collection.item()
        ))));
        if let Some(example) = &example {
            let value = match format {
                "xml" => Value::String(
                    String::from_utf8_lossy(&repr::render_input(Format::Xml, collection, example))
                        .into_owned(),
                ),
                _ => example.clone(),
            };
            content = content.example(Some(value));
        }
        content.build()
    };
    let create = errors(
        OperationBuilder::new()
            .summary(Some(format!(
                "Create a {}; the owner assigns id and versions",
                collection.item()
            )))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content(media("json"), input_content("json"))
                    .content(media("xml"), input_content("xml"))
                    .build(),
            ))
            .response("201", body("201", "created; Location names it")),
    )
    .response("413", plain("body too large"))
    .response("415", plain("unsupported Content-Type"));
    let read = errors(
        OperationBuilder::new()
            .summary(Some(format!(
                "Read one {} (selected aspects)",
                collection.item()
            )))
            .parameter(path_parameter("id"))
            .parameter(
                ParameterBuilder::new()
                    .name("aspects")
                    .parameter_in(ParameterIn::Query)
                    .description(Some(
                        "e.g. ~person~address.home; default: all the caller may read",
                    ))
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            )
            .response(
                "200",
                body("200", "the resource; ETag is the greatest selected version"),
            )
            .response("304", plain("If-None-Match matched"))
            .response("404", plain("missing or deleted")),
    );
    let delete = errors(
        OperationBuilder::new()
            .summary(Some(format!(
                "Delete a {} (tombstone for the feed)",
                collection.item()
            )))
            .parameter(path_parameter("id"))
            .response("204", plain("deleted"))
            .response("412", plain("If-Match did not match")),
    );
    let aspect_names: Vec<String> = collection
        .aspect_names()
        .iter()
        .map(ToString::to_string)
        .collect();
    let aspect_parameter = || {
        ParameterBuilder::new()
            .name("aspect")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(aspect_names.clone())),
            ))
    };
    let put = errors(
        OperationBuilder::new()
            .summary(Some("Replace one aspect (its element alone as the body)"))
            .parameter(path_parameter("id"))
            .parameter(aspect_parameter())
            .response("200", body("200", "the aspect with its new version"))
            .response("404", plain("no such resource"))
            .response("412", plain("If-Match did not match")),
    );
    let delete_aspect = errors(
        OperationBuilder::new()
            .summary(Some("Delete one aspect (tombstone for the feed)"))
            .parameter(path_parameter("id"))
            .parameter(aspect_parameter())
            .response("204", plain("deleted"))
            .response("404", plain("no such resource or aspect")),
    );
    let query = |name: &str, description: &str| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .description(Some(description))
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
    };
    let mut feed = OperationBuilder::new();
    for lookup in collection.lookups() {
        feed = feed.parameter(query(
            &lookup.field,
            &format!(
                "lookup: the {name} whose {} holds this value, paged by id (with after, limit); \
                 answers the feed's envelope, Link rel=next while more",
                lookup.field
            ),
        ));
    }
    if !collection.lookups().is_empty() {
        feed = feed.parameter(query("after", "lookup: the last id of the previous page"));
    }
    let feed = errors(
        feed
            .summary(Some(format!(
                "The delta feed of {name}: resources with a selected aspect newer than version, ascending, in chunks"
            )))
            .parameter(query("version", "the root version of the previous chunk (default 0)"))
            .parameter(query("aspects", "e.g. ~person~address.home; default: the caller's grant"))
            .parameter(query("limit", "resources per chunk, 1 to 1000 (default 100)"))
            .parameter(query("wait", "long poll: seconds to wait for something newer, 0 to 60"))
            .response(
                "200",
                plain("a chunk: root version (ask after it next) and more (ask again at once)"),
            )
            .response("409", plain("version-ahead: the caller has versions this store lost"))
            .response("410", plain("resync-required: re-read from version 0")),
    );
    let mut listing = PathItem::new(HttpMethod::Get, feed);
    let mut one = PathItem::new(HttpMethod::Get, read);
    if collection.role() == &Role::Owner {
        listing.post = Some(create.build());
        one.delete = Some(delete.build());
        let mut aspect = PathItem::new(HttpMethod::Put, put);
        aspect.delete = Some(delete_aspect.build());
        let paths = command_paths(paths, collection, version);
        return paths
            .path(format!("/{name}"), listing)
            .path(format!("/{name}/{{id}}"), one)
            .path(format!("/{name}/{{id}}/{{aspect}}"), aspect);
    }
    paths
        .path(format!("/{name}"), listing)
        .path(format!("/{name}/{{id}}"), one)
}

/// `POST /{collection}/{id}/{command}` for each declared command, with its input's schema.
fn command_paths(mut paths: PathsBuilder, collection: &Collection, version: u32) -> PathsBuilder {
    for command in collection.commands() {
        let media = format!("application/vnd.{}.v{version}+json", collection.owner());
        let operation = OperationBuilder::new()
            .summary(Some(format!(
                "Command {} on one {}: one new version; If-Match applies",
                command.name,
                collection.item()
            )))
            .parameter(
                ParameterBuilder::new()
                    .name("id")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(ObjectBuilder::new().schema_type(Type::String))),
            )
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        media,
                        ContentBuilder::new()
                            .schema(Some((command.input_schema)()))
                            .build(),
                    )
                    .build(),
            ))
            .response(
                "200",
                ResponseBuilder::new().description("what the command changed"),
            )
            .response(
                "404",
                ResponseBuilder::new().description("no such resource (or not yours)"),
            )
            .response(
                "409",
                ResponseBuilder::new().description("the resource's state does not allow it"),
            )
            .response(
                "412",
                ResponseBuilder::new().description("If-Match did not match"),
            );
        paths = paths.path(
            format!("/{}/{{id}}/{}", collection.name(), command.name),
            PathItem::new(HttpMethod::Post, operation),
        );
    }
    paths
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde::{Deserialize, Serialize};
    use utoipa::ToSchema;

    use super::*;
    use crate::aspect::{Aspect, Invalid};
    use crate::types::{Date, Money};

    #[derive(Serialize, Deserialize, ToSchema)]
    struct Line {
        price: Money,
        on: Option<Date>,
    }

    #[derive(Serialize, Deserialize, ToSchema)]
    struct Order {
        lines: Vec<Line>,
        total: Option<Money>,
    }

    impl Aspect for Order {
        type Input = Order;

        fn accept(input: Order) -> Result<Self, Invalid> {
            Ok(input)
        }

        fn example() -> Option<Value> {
            Some(serde_json::json!({"lines": []}))
        }
    }

    #[test]
    fn typed_schemas_have_no_dangling_refs() {
        let sa = ServiceArea::new("orders").owns(
            Collection::new("orders", "order")
                .aspect::<Order>("order")
                .qualified::<Order>("part", "parts", &["a", "b"]),
        );
        let document = serde_json::to_value(document(&sa)).unwrap();
        let schemas = &document["components"]["schemas"];
        for name in ["Money", "Decimal", "Currency", "Date", "Line"] {
            assert!(schemas.get(name).is_some(), "{name} is not registered");
        }
        let mut pending = vec![&document];
        let mut refs = 0;
        while let Some(value) = pending.pop() {
            match value {
                Value::Object(members) => {
                    if let Some(Value::String(target)) = members.get("$ref") {
                        let name = target.strip_prefix("#/components/schemas/").unwrap();
                        assert!(schemas.get(name).is_some(), "dangling {target}");
                        refs += 1;
                    }
                    pending.extend(members.values());
                }
                Value::Array(items) => pending.extend(items),
                _ => {}
            }
        }
        assert!(refs > 5);
        let input = &schemas["order_input"]["properties"];
        assert!(input["parts"]["properties"].get("a").is_some(), "{input}");
        let example = &document["paths"]["/orders"]["post"]["requestBody"]["content"];
        assert_eq!(
            example["application/vnd.orders.v1+json"]["example"],
            serde_json::json!({"order": {"lines": []}, "parts": {"a": {"lines": []}, "b": {"lines": []}}})
        );
        let xml = example["application/vnd.orders.v1+xml"]["example"]
            .as_str()
            .unwrap();
        assert!(
            xml.contains(r#"<parts><part type="a"><lines></lines></part>"#),
            "{xml}"
        );
    }
}
