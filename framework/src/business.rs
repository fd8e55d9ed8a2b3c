//! What business code works with beyond single aspects: [`Draft`]s of whole resources, a
//! [`Context`] that reads (and, for batch jobs, writes) the SA's own collections and copies,
//! and [`Refusal`]s with stable codes.
//!
//! Rules, commands and change reactions are declared on a [`crate::Collection`] or
//! [`crate::ServiceArea`] and run by the framework, which keeps the wire, the versions and the
//! grants to itself: business code never sees a request or a SQL statement.
//!
//! Rules and commands see the resource as it was when the request arrived; the change commits
//! only if the resource is still at that version (the framework pins it like an `If-Match` and
//! tries again, up to [`MAX_ATTEMPTS`] times, when another writer came first). So a status
//! transition checked by a rule can never be overtaken by a concurrent write.

use std::collections::BTreeSet;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::aspect::{AspectName, Invalid};
use crate::model::{Collection, ServiceArea};
use crate::store::{self, AspectEdit, Change, Store, Target};
use crate::version::{ResourceId, TagCondition, Version};

/// How often a rule or command is tried when another writer changed the resource meanwhile.
pub const MAX_ATTEMPTS: usize = 3;

/// The most resources [`Context::find`] returns at once.
pub const MAX_FOUND: usize = 1_000;

/// Why business code refused a change; the edge answers with the status and code.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// `400`: the input breaks a rule.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// `409`: the input is fine, but the resource's state does not allow it (cancelling a
    /// cancelled order).
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// The store failed or refused (`404`, `409 unique-taken`, `503`…), as the edge maps it.
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl Refusal {
    /// A `400` with a stable code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            code,
            message: message.into(),
        }
    }

    /// A `409` with a stable code.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// A mistake in business code (an undeclared collection or aspect): a `500`, logged.
    fn misdeclared(detail: impl Into<String>) -> Self {
        Self::Store(store::Error::Corrupt(detail.into()))
    }
}

impl From<Invalid> for Refusal {
    fn from(invalid: Invalid) -> Self {
        Self::Invalid {
            code: invalid.code,
            message: invalid.message,
        }
    }
}

/// A resource as business code sees it: its live aspects as documents, read and written as
/// typed values. Only the aspects set on it are written when it is stored.
///
/// ```
/// use hiscale::business::Draft;
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Status { status: String }
/// let mut draft = Draft::new("orders");
/// draft.set("status", &Status { status: "placed".into() }).unwrap();
/// let status: Status = draft.get("status").unwrap().unwrap();
/// assert_eq!(status.status, "placed");
/// ```
#[derive(Debug, Clone)]
pub struct Draft {
    collection: String,
    id: Option<ResourceId>,
    version: Version,
    aspects: Map<String, Value>,
    /// The aspects as stored when the draft was read: rules compare against them (a status
    /// may move from `placed` to `cancelled`, never back).
    before: Map<String, Value>,
    changed: BTreeSet<String>,
}

impl Draft {
    /// A resource not stored yet, of `collection`.
    pub fn new(collection: &str) -> Self {
        Self {
            collection: collection.to_owned(),
            id: None,
            version: Version::ZERO,
            aspects: Map::new(),
            before: Map::new(),
            changed: BTreeSet::new(),
        }
    }

    /// A stored resource not read (a write that needs nothing of its current state).
    pub(crate) fn existing(collection: &str, id: ResourceId) -> Self {
        Self {
            id: Some(id),
            ..Self::new(collection)
        }
    }

    /// The live aspects of a stored resource.
    pub(crate) fn stored(collection: &str, resource: &store::StoredResource) -> Self {
        let aspects: Map<String, Value> = resource
            .aspects
            .iter()
            .filter(|aspect| !aspect.deleted)
            .filter_map(|aspect| {
                let body = serde_json::from_str(aspect.body.as_deref()?).ok()?;
                Some((aspect.name.clone(), body))
            })
            .collect();
        Self {
            collection: collection.to_owned(),
            id: Some(resource.id.clone()),
            version: resource.version,
            before: aspects.clone(),
            aspects,
            changed: BTreeSet::new(),
        }
    }

    pub fn collection(&self) -> &str {
        &self.collection
    }

    /// The resource's id; `None` before it is created.
    pub fn id(&self) -> Option<&ResourceId> {
        self.id.as_ref()
    }

    /// The version the draft was read at (`0` for a new resource).
    pub fn version(&self) -> Version {
        self.version
    }

    /// The aspect as `T`, or `None` when the resource does not hold it.
    pub fn get<T: DeserializeOwned>(&self, aspect: &str) -> Result<Option<T>, Refusal> {
        self.aspects
            .get(aspect)
            .map(|body| {
                T::deserialize(body).map_err(|error| {
                    Refusal::misdeclared(format!("aspect {aspect} does not read as asked: {error}"))
                })
            })
            .transpose()
    }

    /// The aspect as it was stored before this change (`None` for a new resource, or when
    /// the resource did not hold it, or when the write did not need to read it).
    pub fn before<T: DeserializeOwned>(&self, aspect: &str) -> Result<Option<T>, Refusal> {
        self.before
            .get(aspect)
            .map(|body| {
                T::deserialize(body).map_err(|error| {
                    Refusal::misdeclared(format!("aspect {aspect} does not read as asked: {error}"))
                })
            })
            .transpose()
    }

    /// Whether this change sets `aspect`.
    pub fn changes(&self, aspect: &str) -> bool {
        self.changed.contains(aspect)
    }

    /// Sets (replaces) an aspect; it is written when the draft is stored.
    pub fn set<T: Serialize>(&mut self, aspect: &str, value: &T) -> Result<(), Refusal> {
        let body = serde_json::to_value(value).map_err(|error| {
            Refusal::misdeclared(format!("aspect {aspect} does not serialise: {error}"))
        })?;
        if !body.is_object() {
            return Err(Refusal::misdeclared(format!(
                "aspect {aspect} must serialise to an object"
            )));
        }
        self.aspects.insert(aspect.to_owned(), body);
        self.changed.insert(aspect.to_owned());
        Ok(())
    }

    /// Sets an already validated document (what the wire gave, after the aspect's `accept`).
    pub(crate) fn set_document(&mut self, aspect: &AspectName, body: Value) {
        self.aspects.insert(aspect.to_string(), body);
        self.changed.insert(aspect.to_string());
    }

    /// Whether anything was set.
    pub fn is_changed(&self) -> bool {
        !self.changed.is_empty()
    }

    /// The document of an aspect as stored (for the framework's ownership checks).
    pub(crate) fn document(&self, aspect: &str) -> Option<&Value> {
        self.aspects.get(aspect)
    }

    /// The edits that store what was set, each declared by `collection`.
    pub(crate) fn edits(&self, collection: &Collection) -> Result<Vec<AspectEdit>, Refusal> {
        self.changed
            .iter()
            .map(|name| {
                let parsed = AspectName::parse(name)
                    .ok()
                    .filter(|parsed| collection.find(parsed).is_some())
                    .ok_or_else(|| {
                        Refusal::misdeclared(format!(
                            "{} declares no aspect {name}",
                            collection.name()
                        ))
                    })?;
                let body = self.aspects.get(name).cloned().unwrap_or(Value::Null);
                Ok(AspectEdit {
                    unique_keys: collection.unique_keys(&parsed, &body),
                    aspect: name.clone(),
                    body: Some(body.to_string()),
                })
            })
            .collect()
    }
}

/// What rules, commands and change reactions may read (and batch jobs write): the SA's own
/// collections and its copies, in the SA's store.
#[derive(Clone)]
pub struct Context {
    store: Store,
    sa: Arc<ServiceArea>,
    customer: Option<ResourceId>,
    /// The interface version whose form documents are stored in, read once when the context
    /// was made: a rule's, command's or job's write goes through the same stored-form rule as
    /// a request's (before, batch jobs wrote the canonical form past it).
    stored_form: crate::interface::InterfaceVersion,
}

impl fmt::Debug for Context {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Context")
            .field("sa", &self.sa.name())
            .field("customer", &self.customer)
            .finish()
    }
}

impl Context {
    pub(crate) fn new(
        store: Store,
        sa: Arc<ServiceArea>,
        customer: Option<ResourceId>,
        stored_form: crate::interface::InterfaceVersion,
    ) -> Self {
        Self {
            store,
            sa,
            customer,
            stored_form,
        }
    }

    /// The signed-in customer the request acts for, when a session made it.
    pub fn customer(&self) -> Option<&ResourceId> {
        self.customer.as_ref()
    }

    fn collection(&self, name: &str) -> Result<&Collection, Refusal> {
        self.sa.collection(name).ok_or_else(|| {
            Refusal::misdeclared(format!("{} has no collection {name}", self.sa.name()))
        })
    }

    /// A live resource of one of the SA's collections (owned or copied), or `None`.
    pub async fn read(&self, collection: &str, id: &ResourceId) -> Result<Option<Draft>, Refusal> {
        let collection = self.collection(collection)?;
        Ok(self
            .store
            .read(collection.name(), id)
            .await?
            .filter(|resource| !resource.deleted)
            .map(|resource| Draft::stored(collection.name(), &resource)))
    }

    /// The live resources whose declared lookup `field` holds `value`, in id order, at most
    /// [`MAX_FOUND`].
    pub async fn find(
        &self,
        collection: &str,
        field: &str,
        value: &str,
    ) -> Result<Vec<Draft>, Refusal> {
        let collection = self.collection(collection)?;
        let lookup = collection.lookup_field(field).ok_or_else(|| {
            Refusal::misdeclared(format!(
                "{} declares no lookup by {field}",
                collection.name()
            ))
        })?;
        let ids = self
            .store
            .lookup(collection.name(), lookup, value, None, MAX_FOUND)
            .await?;
        let mut found = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(draft) = self.read(collection.name(), &id).await? {
                found.push(draft);
            }
        }
        Ok(found)
    }

    /// Stores a new resource of an owned collection (for batch jobs; requests go through the
    /// HTTP edge). Unique fields are claimed as on the wire: a second holder is
    /// [`store::Error::UniqueTaken`].
    pub async fn create(&self, draft: Draft) -> Result<Draft, Refusal> {
        self.store_draft(draft, Target::Create, None).await
    }

    /// Stores what was set on `draft`, only if the resource is still at the version it was
    /// read at ([`store::Error::PreconditionFailed`] otherwise).
    pub async fn update(&self, draft: Draft) -> Result<Draft, Refusal> {
        let id = draft
            .id
            .clone()
            .ok_or_else(|| Refusal::misdeclared("update of a draft that was never stored"))?;
        let condition = TagCondition::exactly(draft.version);
        self.store_draft(draft, Target::Update(id), Some(condition))
            .await
    }

    async fn store_draft(
        &self,
        mut draft: Draft,
        target: Target,
        precondition: Option<TagCondition>,
    ) -> Result<Draft, Refusal> {
        let collection = self.collection(&draft.collection)?;
        if !matches!(collection.role(), crate::model::Role::Owner) {
            return Err(Refusal::misdeclared(format!(
                "{} is a copy; it is written at its owner",
                collection.name()
            )));
        }
        let mut edits = draft.edits(collection)?;
        crate::facade::in_stored_form(collection, self.stored_form, &mut edits);
        let committed = self
            .store
            .commit(
                collection.name(),
                vec![Change {
                    target,
                    precondition,
                    edits,
                }],
            )
            .await?;
        if let Some((id, version)) = committed.changes.first() {
            draft.id = Some(id.clone());
            draft.version = *version;
        }
        draft.changed.clear();
        draft.before = draft.aspects.clone();
        Ok(draft)
    }
}

/// The future a rule, command or reaction returns.
pub type BusinessFuture<T> = Pin<Box<dyn Future<Output = Result<T, Refusal>> + Send>>;

/// A rule run on every write of a collection (create, aspect replacement, command), after each
/// aspect's own validation: it sees the whole resource as it will be and may refuse it or set
/// derived aspects (an order's total from the catalogue's prices).
#[derive(Clone)]
pub(crate) struct Rule(
    pub(crate) Arc<dyn Fn(Context, Draft) -> BusinessFuture<Draft> + Send + Sync>,
);

impl fmt::Debug for Rule {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Rule")
    }
}

/// An action beyond CRUD (`POST /orders/{id}/cancel`): typed input, the resource as it is, and
/// the draft it leaves (only what it sets is written, in one new version).
#[derive(Clone)]
pub(crate) struct Command {
    pub(crate) name: String,
    pub(crate) run: Arc<dyn Fn(Context, Draft, Value) -> BusinessFuture<Draft> + Send + Sync>,
    pub(crate) input_schema: fn() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    /// The input's shape, for reading it from XML.
    pub(crate) shape: Arc<crate::shape::Shape>,
    /// Whether a session may run it on resources it owns.
    pub(crate) for_sessions: bool,
}

impl fmt::Debug for Command {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Command")
            .field("name", &self.name)
            .finish()
    }
}

impl Command {
    pub(crate) fn new<I, F, Fut>(name: &str, for_sessions: bool, run: F) -> Self
    where
        I: DeserializeOwned + utoipa::ToSchema + Send + 'static,
        F: Fn(Context, Draft, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Draft, Refusal>> + Send + 'static,
    {
        let run = Arc::new(run);
        Self {
            name: name.to_owned(),
            run: Arc::new(move |context, draft, input: Value| {
                let run = Arc::clone(&run);
                Box::pin(async move {
                    let (input, refused) = crate::types::reading_input(|| I::deserialize(input));
                    let input = input.map_err(|error| {
                        Refusal::invalid(
                            refused.unwrap_or(crate::codes::INVALID_FIELD),
                            error.to_string(),
                        )
                    })?;
                    run(context, draft, input).await
                })
            }),
            input_schema: || I::schema(),
            shape: Arc::new(crate::shape::Shape::of::<I>()),
            for_sessions,
        }
    }
}

/// A reaction to changes of a collection (owned or copied), run by the SA's batch units: the
/// framework hands it each changed resource once per change, in version order, and remembers
/// how far it got in the SA's database. A batch unit killed mid-way repeats the last changes,
/// so a reaction must be idempotent — a unique field (an invoice's `order`) makes it so.
#[derive(Clone)]
pub(crate) struct Reaction {
    pub(crate) job: String,
    pub(crate) collection: String,
    pub(crate) run: Arc<dyn Fn(Context, Changed) -> BusinessFuture<()> + Send + Sync>,
}

impl fmt::Debug for Reaction {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Reaction")
            .field("job", &self.job)
            .field("collection", &self.collection)
            .finish()
    }
}

/// One changed resource handed to a reaction: as it is now (`None` once deleted).
#[derive(Debug, Clone)]
pub struct Changed {
    pub id: ResourceId,
    /// The version of the change being handled.
    pub version: Version,
    pub now: Option<Draft>,
}
