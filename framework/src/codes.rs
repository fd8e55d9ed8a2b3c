//! Every stable error code the framework answers with, in one place, so that the wire
//! contract can be checked against them (`tests/it/tidy.rs`) and no handler misspells one.
//!
//! Clients match on these strings; they never change once shipped. Each constant says when it
//! is answered and with which HTTP status. The error-code table of `docs/protocol.md` lists
//! every one of them (and the service areas' own).
//!
//! The module is plain data: `repr`, `model` and `topology` use it as well as `http`, and none
//! of them names axum. Service areas keep their business codes in their own crates.
//!
//! ```
//! use hiscale::codes;
//! use hiscale::http::ApiError;
//!
//! let refused = ApiError::bad_request(codes::FORGED_ID, "the owner assigns ids; send none");
//! assert_eq!(refused.code, "forged-id");
//! ```

// Interface versions and media types (negotiation).

/// `406`: no media type in `Accept` is one the unit serves.
pub const NOT_ACCEPTABLE: &str = "not-acceptable";
/// `406` when `Accept` or `/v{N}/` names a version that does not exist; `404` at
/// `PUT /admin/interfaces/v{N}`.
pub const UNKNOWN_INTERFACE_VERSION: &str = "unknown-interface-version";
/// `406`: the URL prefix and the media type name different interface versions.
pub const INTERFACE_VERSION_CONFLICT: &str = "interface-version-conflict";
/// `410`: the interface version was switched off at run time.
pub const INTERFACE_RETIRED: &str = "interface-retired";
/// `503`: a write through an interface version newer than the form documents are stored in
/// while a unit of the previous release still runs (a rolling upgrade).
pub const INTERFACE_UPGRADING: &str = "interface-upgrading";
/// `415`: the request body's `Content-Type` is not one the unit reads.
pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported-media-type";

// Callers and grants.

/// `401`: the request carries no `Authorization` header.
pub const UNAUTHENTICATED: &str = "unauthenticated";
/// `401`: the bearer token is neither a configured caller's nor a valid session.
pub const INVALID_TOKEN: &str = "invalid-token";
/// `401`: a valid session token whose session was ended (a logout, or a change of the
/// customer's credentials) and whose revocation has reached this unit's copy.
pub const SESSION_REVOKED: &str = "session-revoked";
/// `403`: the selected aspects lie outside the caller's grant.
pub const ASPECT_NOT_GRANTED: &str = "aspect-not-granted";
/// `403`: the caller may read no aspect of the collection here (a session where the SA grants
/// sessions nothing); answered before the store is asked, for every id alike.
pub const NOTHING_GRANTED: &str = "nothing-granted";
/// `403`: a user's session asked for a feed, which only service areas read.
pub const FEED_NOT_GRANTED: &str = "feed-not-granted";
/// `403`: a caller may not write here (not the operator, or a session where the collection
/// does not let sessions write, or an aspect outside the session grant).
pub const WRITE_NOT_GRANTED: &str = "write-not-granted";
/// `404`: `POST /{collection}/{id}/{name}` names no command the collection declares.
pub const UNKNOWN_COMMAND: &str = "unknown-command";
/// `409`: a rule or command found the resource changed by other writers on every try; read it
/// and try again.
pub const WRITE_CONFLICT: &str = "write-conflict";
/// `400`: a lookup's `after` is not a resource id.
pub const BAD_CURSOR: &str = "bad-cursor";
/// `403`: a caller without the operator grant called `/admin/…`.
pub const OPERATOR_ONLY: &str = "operator-only";

// Paths, query parameters and headers.

/// `404`: no route, collection or (undeleted) resource by that name.
pub const NOT_FOUND: &str = "not-found";
/// `405`: the path exists but does not take that method.
pub const METHOD_NOT_ALLOWED: &str = "method-not-allowed";
/// `400`: the path could not be decoded.
pub const BAD_PATH: &str = "bad-path";
/// `400`: the query string is not well-formed.
pub const BAD_QUERY: &str = "bad-query";
/// `400`: a query parameter the path does not take.
pub const UNKNOWN_PARAMETER: &str = "unknown-parameter";
/// `400`: a query parameter given more than once.
pub const REPEATED_PARAMETER: &str = "repeated-parameter";
/// `400`: `aspects=` is not a selector (empty, no leading `~`, a bad name).
pub const BAD_SELECTOR: &str = "bad-selector";
/// `400`: `aspects=` is longer than the configured limit.
pub const SELECTOR_TOO_LONG: &str = "selector-too-long";
/// `400` for an undeclared aspect in a selector or body; `404` for one in a path.
pub const UNKNOWN_ASPECT: &str = "unknown-aspect";
/// `404`: a `DELETE` of an aspect the resource does not hold (or holds deleted).
pub const ASPECT_NOT_FOUND: &str = "aspect-not-found";
/// `400`: `If-Match` / `If-None-Match` is not an entity tag or `*`.
pub const BAD_PRECONDITION: &str = "bad-precondition";

// The delta feed.

/// `400`: `version=` is not a whole number from 0 to 2^53 − 1 (9007199254740991).
pub const BAD_VERSION: &str = "bad-version";
/// `400`: `limit=` is outside 1 to 1000 (never clamped).
pub const BAD_LIMIT: &str = "bad-limit";
/// `400`: `wait=` is outside 0 to 60 seconds (never clamped).
pub const BAD_WAIT: &str = "bad-wait";
/// `410`: the asked version is older than the oldest tombstone still kept; re-read from 0.
pub const RESYNC_REQUIRED: &str = "resync-required";
/// `409`: the asked version is ahead of the owner's, which has lost changes.
pub const VERSION_AHEAD: &str = "version-ahead";
/// `400`: `origin=` names no owner datacenter of the collection.
pub const UNKNOWN_ORIGIN: &str = "unknown-origin";
/// `400`: a copy of a collection owned in several datacenters serves one origin's changes
/// at a time; `origin=` must name one.
pub const ORIGIN_REQUIRED: &str = "origin-required";
/// `421`: the resource (or the feed of an origin) is at another owner datacenter, named in
/// the message: its home, where its writes go.
pub const WRONG_DATACENTER: &str = "wrong-datacenter";
/// Never answered: a poller refuses a chunk from its source that is not a feed chunk (its
/// replication status and log say so).
pub const MALFORMED_FEED: &str = "malformed-feed";

// Writes.

/// `405`: a write to a copy; the message names the owner.
pub const READ_ONLY_COPY: &str = "read-only-copy";
/// `400`: a create sets the resource's `id`.
pub const FORGED_ID: &str = "forged-id";
/// `400`: a write sets the resource's or an aspect's `version`.
pub const FORGED_VERSION: &str = "forged-version";
/// `400`: a create without any aspect.
pub const EMPTY_RESOURCE: &str = "empty-resource";
/// `400`: a create gives the same aspect twice.
pub const DUPLICATE_ASPECT: &str = "duplicate-aspect";
/// `412`: `If-Match` names a version the resource has moved on from.
pub const PRECONDITION_FAILED: &str = "precondition-failed";
/// `409`: a unique value (a login) is already held by another resource.
pub const ALREADY_TAKEN: &str = "already-taken";
/// `400`: an aspect's fields do not fit its declared type (missing or unknown fields, a date
/// off the calendar, an unknown enumeration value); the message starts with the field's path.
pub const INVALID_ASPECT: &str = "invalid-aspect";
/// `400`: a field's value is not acceptable: of the wrong type for the field (a decimal as a
/// JSON number, text where an integer belongs, a list item element of the wrong name), or it
/// breaks a service's rule.
pub const INVALID_FIELD: &str = "invalid-field";
/// `400`: a string in the body (a field's value or name, in JSON or XML, of an aspect or a
/// command) holds a character XML 1.0 cannot carry: a control character other than TAB, LF
/// and CR, or U+FFFE / U+FFFF. Stored, it could not be answered as XML.
pub const UNREPRESENTABLE_CHARACTER: &str = "unrepresentable-character";
/// `400`: a money amount has more decimals than its currency's minor units (ISO 4217: EUR 2,
/// JPY 0).
pub const TOO_MANY_DECIMALS: &str = "too-many-decimals";

// Request bodies.

/// `413`: the body is larger than the configured limit.
pub const BODY_TOO_LARGE: &str = "body-too-large";
/// `400`: the body could not be read from the connection.
pub const UNREADABLE_BODY: &str = "unreadable-body";
/// `408`: the body did not arrive within `limits.body_deadline_secs`, however steadily it came.
pub const BODY_TOO_SLOW: &str = "body-too-slow";
/// `414`: the request target is longer than a unit takes.
pub const URI_TOO_LONG: &str = "uri-too-long";
/// `431`: too many request headers, or too many bytes of them.
pub const HEADERS_TOO_LARGE: &str = "headers-too-large";
/// `400`: the body is not well-formed XML (or not UTF-8, or has no single root).
pub const MALFORMED_XML: &str = "malformed-xml";
/// `400`: the body is not a JSON object.
pub const MALFORMED_JSON: &str = "malformed-json";
/// `400`: the XML root element is not the resource's or the aspect's.
pub const WRONG_ROOT: &str = "wrong-root";
/// `400`: the XML resource element carries an attribute.
pub const UNEXPECTED_ATTRIBUTE: &str = "unexpected-attribute";
/// `400`: a qualified aspect's XML element lacks its `type` attribute.
pub const MISSING_QUALIFIER: &str = "missing-qualifier";
/// `400`: the body's `type` names another qualifier than the path.
pub const QUALIFIER_MISMATCH: &str = "qualifier-mismatch";
/// `400`: an aspect gives the same field twice.
pub const DUPLICATE_FIELD: &str = "duplicate-field";
/// `400`: the XML body has a DOCTYPE.
pub const XML_DTD_FORBIDDEN: &str = "xml-dtd-forbidden";
/// `400`: the XML body uses an entity other than XML's five predefined ones.
pub const XML_ENTITY_FORBIDDEN: &str = "xml-entity-forbidden";
/// `400`: the XML body is nested deeper than the limit.
pub const XML_TOO_DEEP: &str = "xml-too-deep";
/// `400`: the XML body has more elements than the limit.
pub const XML_TOO_LARGE: &str = "xml-too-large";
/// `400`: the JSON body is nested deeper than the limit.
pub const JSON_TOO_DEEP: &str = "json-too-deep";
/// `400`: the JSON body has more values (objects, arrays, scalars) than the element limit.
pub const JSON_TOO_LARGE: &str = "json-too-large";

// Operations.

/// `400`: `PUT /admin/interfaces/…` names no version like `v1`.
pub const BAD_INTERFACE_VERSION: &str = "bad-interface-version";
/// `400`: `PUT /admin/interfaces/v{N}` without a known `{"state": …}` body.
pub const BAD_INTERFACE_STATE: &str = "bad-interface-state";
/// `409`: retiring (or making the default) a version would leave no active version, or make
/// the default of bare media types a retired one.
pub const LAST_ACTIVE_INTERFACE: &str = "last-active-interface";
/// `409`: a registered feed consumer still polls the version to retire; `?force=true` retires
/// it anyway (the answer names the consumers).
pub const INTERFACE_IN_USE: &str = "interface-in-use";

// Failures of the unit.

/// `500`: the unit failed; the detail is logged, never shown.
pub const INTERNAL_ERROR: &str = "internal-error";
/// `503` (with `Retry-After`): the service area's database cannot be reached.
pub const DATABASE_UNAVAILABLE: &str = "database-unavailable";
/// `503`: too many requests wait for CPU-heavy work (password hashing) at this unit.
pub const BUSY: &str = "busy";
/// `503`: the unit holds `limits.max_connections` already; this connection came in on the few
/// kept for `/health` and `/heartbeat`, so it takes nothing else.
pub const TOO_MANY_CONNECTIONS: &str = "too-many-connections";
/// `408`: (HAProxy) the request's head, or the part of its body HAProxy buffers, did not arrive
/// within `timeout http-request`.
pub const REQUEST_TOO_SLOW: &str = "request-too-slow";
/// `429`: the gateway holds as many connections from this client address as it takes from one.
pub const TOO_MANY_CLIENT_CONNECTIONS: &str = "too-many-client-connections";
/// `429` (with `Retry-After`): this unit took as many sign-ups (anonymous creates) as it takes
/// a minute.
pub const TOO_MANY_SIGN_UPS: &str = "too-many-sign-ups";
/// `503`: the owner was rolled back and refuses writes until an operator has restored it.
pub const RESTORING: &str = "restoring";
/// `409`: `POST /admin/restore` while a refill runs already at this unit (the answer carries
/// its progress; `GET /admin/restore` follows it).
pub const REFILL_RUNNING: &str = "refill-running";

// The entry in front of the units (HAProxy's generated configuration, the demo gateway).

/// `404`: the path's first segment names no service area.
pub const UNKNOWN_SERVICE_AREA: &str = "unknown-service-area";
/// `502`, `503` or `504`: no unit of the service area took or finished the request.
pub const NO_UNIT_AVAILABLE: &str = "no-unit-available";
/// `400`: the demo gateway cannot forward the request's target.
pub const BAD_REQUEST: &str = "bad-request";
