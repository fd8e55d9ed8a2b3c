//! The OpenAPI document, derived from what the service area declares, so it can never list a
//! route or an aspect the unit does not have.

use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, OpenApi, OpenApiBuilder, PathsBuilder, Ref,
    RefOr, Required, Response, ResponseBuilder,
};

use serde_json::{Map, Value};

use crate::model::{Collection, Role, ServiceArea};
use crate::repr::{self, Format};

mod xml;

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
/// the aspects as that version's facades show them. Every status an operation can answer is
/// listed with the error body's schema, query parameters carry their types and bounds, and the
/// public endpoints (health, metrics, the documents themselves, an SA's anonymous operations)
/// say that they need no token — what a generated client and schemathesis hold the unit to.
pub fn document_for(sa: &ServiceArea, version: u32) -> OpenApi {
    let sa = &sa.as_version(version);
    let mut paths = PathsBuilder::new();
    let mut components = ComponentsBuilder::new()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        )
        .schema(ERROR_SCHEMA, error_schema());
    for collection in sa.collections() {
        components = collection_schemas(components, collection);
        paths = collection_paths(paths, collection, version);
    }
    paths = operations_paths(paths, sa.name(), version);
    for (path, item) in sa.documented_paths() {
        paths = paths.path(path.clone(), item.clone());
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

/// The document as a unit serves it (`GET /openapi.json`): [`document_for`] with the feed's
/// origins, and the XML request bodies described for XML (see `openapi/xml.rs`).
pub(crate) fn served(
    sa: &ServiceArea,
    version: u32,
    origins: &std::collections::BTreeMap<String, (Vec<String>, bool)>,
) -> Value {
    let document = with_origins(document_for(sa, version), origins);
    let mut value = serde_json::to_value(&document).unwrap_or_default();
    xml::describe(&mut value, &sa.as_version(version));
    value
}

/// The name of the error body's schema: `{"error":{"code","message"}}`.
const ERROR_SCHEMA: &str = "error";

fn error_schema() -> ObjectBuilder {
    let text = || ObjectBuilder::new().schema_type(Type::String);
    ObjectBuilder::new().required("error").property(
        "error",
        ObjectBuilder::new()
            .required("code")
            .required("message")
            .property(
                "code",
                text().description(Some("stable, listed in docs/protocol.md")),
            )
            .property("message", text()),
    )
}

/// An error answer: the error body in the media types of `owner` (the collection's owner, or
/// the SA for its own operations), XML and JSON. For an SA documenting its own routes
/// ([`ServiceArea::documents`]).
pub fn error_response(owner: &str, version: u32, description: &str) -> Response {
    let mut response = ResponseBuilder::new().description(description);
    for format in ["json", "xml"] {
        response = response.content(
            format!("application/vnd.{owner}.v{version}+{format}"),
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ERROR_SCHEMA)))
                .build(),
        );
    }
    response.build()
}

/// Adds the error answers every operation may give whatever it does: no, an unknown or a
/// revoked token, outside the grant, an interface version or format it does not serve or that
/// is retired, a request head beyond its bounds, and a unit that cannot serve now (drained,
/// its database away).
fn with_common_errors(operation: OperationBuilder, owner: &str, version: u32) -> OperationBuilder {
    operation
        .response(
            "401",
            error_response(
                owner,
                version,
                "no bearer token (unauthenticated); an unknown one, or a session that is \
                 expired or signed with a key not held here (invalid-token); a session that \
                 was ended by signing out or a new password (session-revoked)",
            ),
        )
        .response(
            "403",
            error_response(owner, version, "outside the caller's grant"),
        )
        .response(
            "406",
            error_response(
                owner,
                version,
                "an interface version or format this unit does not serve",
            ),
        )
        .response(
            "410",
            error_response(
                owner,
                version,
                "interface-retired: this version is out of service",
            ),
        )
        .response(
            "414",
            error_response(
                owner,
                version,
                "uri-too-long: the request target (path and query) is over 8,192 bytes",
            ),
        )
        .response(
            "431",
            error_response(
                owner,
                version,
                "headers-too-large: a request header, or all of them, beyond the unit's bounds",
            ),
        )
        .response(
            "503",
            error_response(
                owner,
                version,
                "not now: drained, database unreachable, or restoring (writes)",
            ),
        )
}

/// A query parameter with its schema.
fn query(name: &str, description: &str, schema: ObjectBuilder) -> ParameterBuilder {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .description(Some(description))
        .schema(Some(schema))
}

/// Documents `origin=` on the feed of each collection owned in several datacenters (`origins`:
/// those datacenters by collection, as this unit serves them): the names it takes, and whether
/// it may be left out (at an owner, for its own origin) or not (at a copy).
pub(crate) fn with_origins(
    mut document: OpenApi,
    origins: &std::collections::BTreeMap<String, (Vec<String>, bool)>,
) -> OpenApi {
    for (collection, (names, required)) in origins {
        let Some(operation) = document
            .paths
            .paths
            .get_mut(&format!("/{collection}"))
            .and_then(|item| item.get.as_mut())
        else {
            continue;
        };
        let described = if *required {
            "whose changes: an owner datacenter's name (a copy of several origins serves one at a time)"
        } else {
            "whose changes: this owner datacenter's name, the default (another's is 421 wrong-datacenter)"
        };
        let schema = ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(names.clone()));
        let parameter = query("origin", described, schema)
            .required(if *required {
                utoipa::openapi::Required::True
            } else {
                utoipa::openapi::Required::False
            })
            .build();
        operation
            .parameters
            .get_or_insert_with(Vec::new)
            .push(utoipa::openapi::RefOr::T(parameter));
    }
    document
}

/// A whole number within `range`, as the unit parses it.
fn whole_number(minimum: i64, maximum: i64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(minimum))
        .maximum(Some(maximum))
}

/// An aspect selector naming only `collection`'s aspects and families (`~person~address.home`).
fn selector_schema(collection: &Collection) -> ObjectBuilder {
    let mut names: Vec<String> = Vec::new();
    for aspect in collection.aspect_names() {
        let text = aspect.to_string();
        if let Some((family, _)) = text.split_once('.')
            && !names.iter().any(|name| name == family)
        {
            names.push(family.to_owned());
        }
        names.push(text);
    }
    let alternatives: Vec<String> = names.iter().map(|name| name.replace('.', "\\.")).collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^(~({}))+$", alternatives.join("|"))))
        .max_length(Some(256))
}

/// The resource's schemas: as answered (each aspect with its `version`, qualified aspects under
/// their container) and as written (`{item}_input`).
fn collection_schemas(
    mut components: ComponentsBuilder,
    collection: &Collection,
) -> ComponentsBuilder {
    let mut resource = ObjectBuilder::new()
        .property("id", ObjectBuilder::new().schema_type(Type::String))
        .property("version", ObjectBuilder::new().schema_type(Type::Integer))
        .required("id")
        .required("version");
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
            .schema(stored.clone(), with_version(aspect.shown_schema()))
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
    // The unit refuses a member it does not know (`unknown-aspect`): so does the schema.
    let closed = || Some(AdditionalProperties::FreeForm(false));
    for (container, stored_group, input_group) in groups {
        resource = resource.property(container.clone(), stored_group);
        // An empty container is taken (it holds no aspect), so the schema allows it too.
        input = input.property(container, input_group.additional_properties(closed()));
    }
    // A new resource needs at least one aspect (`empty-resource`).
    let item = collection.item().to_owned();
    components.schema(item.clone(), resource).schema(
        format!("{item}_input"),
        input
            .min_properties(Some(1))
            .additional_properties(closed()),
    )
}

/// An aspect's schema as answered: its fields and its own `version`.
fn with_version(schema: RefOr<Schema>) -> RefOr<Schema> {
    let version = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(1))
        .build();
    match schema {
        RefOr::T(Schema::Object(mut object)) => {
            object
                .properties
                .insert("version".to_owned(), RefOr::T(Schema::Object(version)));
            object.required.push("version".to_owned());
            RefOr::T(Schema::Object(object))
        }
        other => RefOr::T(Schema::AllOf(
            AllOfBuilder::new()
                .item(other)
                .item(
                    ObjectBuilder::new()
                        .property("version", version)
                        .required("version"),
                )
                .build(),
        )),
    }
}

fn collection_paths(
    mut paths: PathsBuilder,
    collection: &Collection,
    version: u32,
) -> PathsBuilder {
    let owner = collection.owner();
    let media = |format: &str| format!("application/vnd.{owner}.v{version}+{format}");
    let item_ref = || Ref::from_schema_name(collection.item());
    let body = |description: &str, schema: Ref| {
        ResponseBuilder::new()
            .description(description)
            .content(
                media("xml"),
                ContentBuilder::new().schema(Some(schema.clone())).build(),
            )
            .content(
                media("json"),
                ContentBuilder::new().schema(Some(schema)).build(),
            )
    };
    let error = |description: &str| error_response(owner, version, description);
    let plain = |description: &str| ResponseBuilder::new().description(description);
    // An id as `ResourceId` takes it; the example names the first resource an owner creates,
    // so a client exploring the document (schemathesis among them) reaches a stored one.
    let id_parameter = || {
        ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(format!(
                        "^[A-Za-z0-9_-]{{1,{}}}$",
                        crate::version::ResourceId::MAX_LEN
                    ))),
            ))
            .example(Some(Value::String("1".to_owned())))
    };
    let common = |operation: OperationBuilder| with_common_errors(operation, owner, version);
    let name = collection.name();
    let aspects_parameter = |default: &str| {
        query(
            "aspects",
            &format!("e.g. ~person~address.home; default: {default}"),
            selector_schema(collection),
        )
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
            ObjectBuilder::new()
                .schema_type(Type::String)
                .max_length(Some(crate::http::lookup::MAX_LOOKUP_CHARS)),
        ));
    }
    if !collection.lookups().is_empty() {
        feed = feed.parameter(query(
            "after",
            "lookup: the last id of the previous page",
            // Ids are opaque strings on the wire (ours are decimal): what `ResourceId` takes.
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(format!(
                    "^[A-Za-z0-9_-]{{1,{}}}$",
                    crate::version::ResourceId::MAX_LEN
                ))),
        ));
    }
    let feed = common(
        feed.summary(Some(format!(
            "The delta feed of {name}: resources with a selected aspect newer than version, in chunks; within a chunk each resource comes once, with its selected aspects changed after version, in ascending order of the greatest of their versions; a resource whose changes fall into two chunks comes again in the later one"
        )))
        .parameter(query(
            "version",
            "the root version of the previous chunk (default 0); not with a lookup",
            whole_number(0, i64::MAX),
        ))
        .parameter(aspects_parameter("the caller's grant"))
        .parameter(query(
            "limit",
            "resources per chunk (default 100)",
            whole_number(1, i64::from(crate::config::FEED_MAX_LIMIT)),
        ))
        .parameter(query(
            "wait",
            "long poll: seconds to wait for something newer; not with a lookup",
            whole_number(0, crate::config::FEED_MAX_WAIT_SECS as i64),
        ))
        .response(
            "200",
            plain("a chunk: root version (ask after it next), more (ask again at once), items"),
        )
        .response("400", error("a parameter out of its bounds (stable code in the body)"))
        .response("409", error("version-ahead: the caller has versions this store lost"))
        .response("410", error("resync-required: re-read from version 0; or interface-retired")),
    );
    let read = common(
        OperationBuilder::new()
            .summary(Some(format!(
                "Read one {} (selected aspects)",
                collection.item()
            )))
            .parameter(id_parameter())
            .parameter(aspects_parameter("all the caller may read"))
            .response(
                "200",
                body(
                    "the resource; its ETag names the greatest selected version and the representation (\"7\", \"7-xml\", \"7-v2\")",
                    item_ref(),
                ),
            )
            .response("304", plain("If-None-Match matched"))
            .response("400", error("a bad selector"))
            .response("404", error("missing or deleted")),
    );
    let mut listing = PathItem::new(HttpMethod::Get, feed);
    let mut one = PathItem::new(HttpMethod::Get, read);
    // A copy, or a collection only the unit itself writes (revocations): reads only.
    if collection.role() != &Role::Owner || !collection.writable_by_callers() {
        return paths
            .path(format!("/{name}"), listing)
            .path(format!("/{name}/{{id}}"), one);
    }

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
    let mut create = common(
        OperationBuilder::new()
            .summary(Some(format!(
                "Create a {}; the owner assigns id and versions",
                collection.item()
            )))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content(media("json"), input_content("json"))
                    .content(media("xml"), input_content("xml"))
                    .required(Some(Required::True))
                    .build(),
            ))
            .response("201", body("created; Location names it", item_ref()))
            .response("400", error("bad input (stable code in the body)"))
            .response(
                "409",
                error("a unique value already taken, or the collection is restoring"),
            )
            .response("413", error("body too large"))
            .response(
                "415",
                error("a Content-Type other than the version's XML or JSON in UTF-8"),
            ),
    );
    if collection.is_open_to_sign_up() {
        // Anyone may sign up, within the unit's rate (429); a token is optional.
        create = create
            .securities(Some([
                SecurityRequirement::default(),
                SecurityRequirement::new("bearer", Vec::<String>::new()),
            ]))
            .response(
                "429",
                error("too many sign-ups at this unit; Retry-After says when"),
            );
    }
    listing.post = Some(create.build());
    one.delete = Some(
        common(
            OperationBuilder::new()
                .summary(Some(format!(
                    "Delete a {} (tombstone for the feed)",
                    collection.item()
                )))
                .parameter(id_parameter())
                .response("204", plain("deleted"))
                .response("404", error("missing or already deleted"))
                .response("409", error("the collection is restoring"))
                .response("412", error("If-Match did not match")),
        )
        .build(),
    );
    paths = paths
        .path(format!("/{name}"), listing)
        .path(format!("/{name}/{{id}}"), one);

    // One path per aspect, each with its own body: a generated client gets a typed method.
    for aspect in collection.aspects() {
        let aspect_name = aspect.name.to_string();
        let written = format!(
            "{}_{}_input",
            collection.item(),
            aspect_name.replace('.', "_")
        );
        let mut json = ContentBuilder::new().schema(Some(Ref::from_schema_name(written.clone())));
        if let Some(example) = aspect.example() {
            json = json.example(Some(example));
        }
        let put = common(
            OperationBuilder::new()
                .summary(Some(format!(
                    "Replace {aspect_name} (its element alone as the body)"
                )))
                .parameter(id_parameter())
                .request_body(Some(
                    RequestBodyBuilder::new()
                        .content(media("json"), json.build())
                        .content(
                            media("xml"),
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name(written)))
                                .build(),
                        )
                        .required(Some(Required::True))
                        .build(),
                ))
                .response(
                    "200",
                    body(
                        "the resource with this aspect alone, at its new version",
                        item_ref(),
                    ),
                )
                .response("400", error("bad input (stable code in the body)"))
                .response("404", error("no such resource"))
                .response(
                    "409",
                    error("a unique value already taken, or the collection is restoring"),
                )
                .response("412", error("If-Match did not match"))
                .response("413", error("body too large"))
                .response(
                    "415",
                    error("a Content-Type other than the version's XML or JSON in UTF-8"),
                ),
        );
        let delete = common(
            OperationBuilder::new()
                .summary(Some(format!(
                    "Delete {aspect_name} (tombstone for the feed)"
                )))
                .parameter(id_parameter())
                .response("204", plain("deleted"))
                .response("404", error("no such resource or aspect"))
                .response("409", error("the collection is restoring"))
                .response("412", error("If-Match did not match")),
        );
        let mut item = PathItem::new(HttpMethod::Put, put);
        item.delete = Some(delete.build());
        paths = paths.path(format!("/{name}/{{id}}/{aspect_name}"), item);
    }
    command_paths(paths, collection, version)
}

/// The unit's own operations: public ones (health, metrics, the documents) and the operator's.
fn operations_paths(mut paths: PathsBuilder, sa: &str, version: u32) -> PathsBuilder {
    let text = |description: &str| {
        ResponseBuilder::new().description(description).content(
            "text/plain; charset=utf-8",
            ContentBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build(),
        )
    };
    let public = |summary: &str, ok: ResponseBuilder| {
        OperationBuilder::new()
            .summary(Some(summary))
            .securities(Some(Vec::<SecurityRequirement>::new()))
            .response("200", ok)
    };
    paths = paths
        .path(
            "/health",
            PathItem::new(
                HttpMethod::Get,
                public("PASS, with warning lines; HAProxy's check", text("PASS"))
                    .response("503", text("FAIL and one reason a line")),
            ),
        )
        .path(
            "/health/write",
            PathItem::new(
                HttpMethod::Get,
                public(
                    "PASS while this unit takes writes for every collection it owns; HAProxy's \
                     check for writing methods",
                    text("PASS"),
                )
                .response(
                    "503",
                    text(
                        "FAIL and one reason a line (what fails /health, the start gate, a \
                         collection restoring)",
                    ),
                ),
            ),
        )
        .path(
            "/heartbeat",
            PathItem::new(
                HttpMethod::Get,
                public(
                    "the unit's id and reader role (a backup watches its primary by it)",
                    ResponseBuilder::new().description("the unit's id and role"),
                ),
            ),
        )
        .path(
            "/metrics",
            PathItem::new(
                HttpMethod::Get,
                public(
                    "Prometheus metrics",
                    text("the metrics in Prometheus' text format"),
                ),
            ),
        )
        .path(
            "/openapi.json",
            PathItem::new(
                HttpMethod::Get,
                public(
                    "this document (interface v1; /v{N}/openapi.json for others)",
                    ResponseBuilder::new().description("the document"),
                ),
            ),
        );
    let operator = |summary: &str, ok: &str| {
        with_common_errors(
            OperationBuilder::new()
                .summary(Some(format!("(operator) {summary}")))
                .response(ok, ResponseBuilder::new().description(summary)),
            sa,
            version,
        )
    };
    let reads = [
        (
            "/admin/consumers",
            "each consumer's last polled version and lag",
        ),
        (
            "/admin/replication",
            "per source: cursor, lag, role, polling or standing by",
        ),
        ("/admin/interfaces", "interface versions and their states"),
        ("/admin/assumptions", "what the PostgreSQL checks found"),
    ];
    for (path, summary) in reads {
        paths = paths.path(
            path,
            PathItem::new(HttpMethod::Get, operator(summary, "200")),
        );
    }
    let mut restore = PathItem::new(
        HttpMethod::Get,
        operator(
            "owned collections in restoring state, the start gate and the refill",
            "200",
        ),
    );
    restore.post = Some(
        operator(
            "enter restoring and refill from the peers; answers the refill's report",
            "200",
        )
        .build(),
    );
    restore.delete = Some(
        operator(
            "leave restoring: continue past every version a consumer reported",
            "200",
        )
        .build(),
    );
    let mut drain = PathItem::new(
        HttpMethod::Put,
        operator("take this unit out of rotation", "204"),
    );
    drain.delete = Some(operator("put this unit back into rotation", "204").build());
    let release = PathItem::new(
        HttpMethod::Post,
        operator(
            "open the start gate without the consumers not heard from; answers `released`",
            "200",
        ),
    );
    let purge = PathItem::new(
        HttpMethod::Post,
        operator(
            "purge tombstones every consumer has passed, now; answers the report per collection",
            "200",
        ),
    );
    paths
        .path("/admin/restore", restore)
        .path("/admin/restore/release", release)
        .path("/admin/purge", purge)
        .path("/admin/drain", drain)
        .path(
            "/admin/interfaces/{version}",
            PathItem::new(HttpMethod::Put, interface_state(operator, sa, version)),
        )
}

/// `PUT /admin/interfaces/v{N}`: an interface version's state, sunset and default.
fn interface_state(
    operator: impl Fn(&str, &str) -> OperationBuilder,
    sa: &str,
    version: u32,
) -> OperationBuilder {
    let error = |description: &str| error_response(sa, version, description);
    let state = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["active", "deprecated", "retired"]));
    let body = ObjectBuilder::new()
        .property("state", state)
        .property(
            "sunset",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .property("default", ObjectBuilder::new().schema_type(Type::Boolean))
        .min_properties(Some(1))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    operator(
        "set an interface version's state, sunset date or whether it is the default",
        "204",
    )
    .parameter(
        ParameterBuilder::new()
            .name("version")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some("^v[0-9]+$")),
            )),
    )
    .parameter(
        query(
            "force",
            "retire a version feed consumers still poll",
            ObjectBuilder::new().schema_type(Type::Boolean),
        )
        .required(Required::False),
    )
    .request_body(Some(
        RequestBodyBuilder::new()
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(body)).build(),
            )
            .required(Some(Required::True))
            .build(),
    ))
    .response(
        "400",
        error("bad-interface-version, bad-interface-state or bad-query"),
    )
    .response("404", error("unknown-interface-version"))
    .response(
        "409",
        error("last-active-interface, or interface-in-use: feed consumers still poll it"),
    )
    .response("415", error("a body that is not JSON"))
}

/// `POST /{collection}/{id}/{command}` for each declared command, with its input's schema.
fn command_paths(mut paths: PathsBuilder, collection: &Collection, version: u32) -> PathsBuilder {
    let owner = collection.owner();
    let error = |description: &str| error_response(owner, version, description);
    for command in collection.commands() {
        let media = format!("application/vnd.{owner}.v{version}+json");
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
            .response("400", error("bad input (stable code in the body)"))
            .response("404", error("no such resource (or not yours)"))
            .response("409", error("the resource's state does not allow it"))
            .response("412", error("If-Match did not match"))
            .response("413", error("body too large"))
            .response("415", error("a Content-Type other than JSON in UTF-8"));
        let operation = with_common_errors(operation, owner, version);
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
        // A member the unit refuses (`unknown-aspect`) is one the schema refuses.
        assert_eq!(schemas["order_input"]["additionalProperties"], false);
        assert_eq!(input["parts"]["additionalProperties"], false, "{input}");
        // Every operator route the unit has is in the document.
        for (path, method) in [
            ("/admin/purge", "post"),
            ("/admin/restore/release", "post"),
            ("/admin/interfaces/{version}", "put"),
            ("/admin/interfaces", "get"),
            ("/admin/restore", "delete"),
            ("/admin/drain", "put"),
        ] {
            assert!(
                document["paths"][path].get(method).is_some(),
                "{method} {path} is not documented"
            );
        }
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
