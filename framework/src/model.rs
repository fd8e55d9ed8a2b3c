//! What a service area declares: the collections it owns and their typed aspects.
//!
//! Services describe their business data here once; the framework derives routes,
//! representations, validation and the OpenAPI document from it.

use std::future::Future;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use crate::aspect::{Aspect, AspectName, Invalid, Selection, UniqueKey};
use crate::business::{Changed, Command, Context, Draft, Reaction, Refusal, Rule};
use crate::codes;
use crate::facade::{Facade, FromOld, StoredUpgrade, ToOld, Upgrade};
use crate::interface::InterfaceVersion;
use crate::shape::Shape;

/// A service area: a name (used in media types, `application/vnd.{sa}.v1+xml`), what it owns
/// and what it keeps copies of.
#[derive(Debug, Clone)]
pub struct ServiceArea {
    name: String,
    owned: Vec<Collection>,
    copied: Vec<Collection>,
    reactions: Vec<Reaction>,
    /// The interface versions it speaks, oldest first; the newest is canonical in the store.
    versions: Vec<InterfaceVersion>,
    /// The GUI plugin its units serve under `/gui/…`, if it has one.
    gui: Option<crate::gui::Gui>,
    /// The SA's own routes (login's `POST /sessions`) as its OpenAPI document lists them.
    documented: Vec<(String, utoipa::openapi::PathItem)>,
    /// The collection and aspect whose change ends a customer's sessions (login: its copy of
    /// `customers`, `account`).
    credentials: Option<(String, String)>,
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
            reactions: Vec::new(),
            versions: vec![1],
            gui: None,
            documented: Vec::new(),
            credentials: None,
        }
    }

    /// Declares the credentials sessions are signed in against: a change of `aspect` of a
    /// resource of `collection` (a new password, a new login, a deletion) revokes every session
    /// of that customer signed in before it, at every SA (see [`crate::revocation`]). Only the
    /// SA that signs sessions acts on it; tokens carry the aspect's version as `cv`.
    pub fn ends_sessions_when_changed(mut self, collection: &str, aspect: &str) -> Self {
        assert!(
            self.collection(collection).is_some_and(|declared| declared
                .aspect_names()
                .iter()
                .any(|name| name.to_string() == aspect)),
            "{} ends sessions on changes of {collection}'s {aspect}, which it does not declare",
            self.name
        );
        self.credentials = Some((collection.to_owned(), aspect.to_owned()));
        self
    }

    /// The collection and aspect declared by [`ServiceArea::ends_sessions_when_changed`].
    pub fn session_credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(collection, aspect)| (collection.as_str(), aspect.as_str()))
    }

    /// Documents a route the SA adds beside the framework's (`unit_routes`, such as login's
    /// `POST /sessions`) in its OpenAPI document, so the document lists every operation a
    /// client can call.
    pub fn documents(mut self, path: &str, item: utoipa::openapi::PathItem) -> Self {
        self.documented.push((path.to_owned(), item));
        self
    }

    /// The SA's own documented routes ([`ServiceArea::documents`]).
    pub fn documented_paths(&self) -> &[(String, utoipa::openapi::PathItem)] {
        &self.documented
    }

    /// Declares the SA's GUI plugin, served by its units under `/gui/…` with a generated
    /// `/gui/manifest.json` (see [`crate::gui`]).
    pub fn gui(mut self, gui: crate::gui::Gui) -> Self {
        self.gui = Some(gui);
        self
    }

    /// The SA's GUI plugin, if it declares one.
    pub fn gui_plugin(&self) -> Option<&crate::gui::Gui> {
        self.gui.as_ref()
    }

    /// Declares interface version `version` (v1 always exists). The newest declared version is
    /// canonical: the aspects' types are its shapes, and what the store holds. Older versions
    /// show aspects whose shape changed through facades ([`Collection::facade`]).
    ///
    /// ```
    /// use hiscale::ServiceArea;
    /// let sa = ServiceArea::new("registration").interface_version(2);
    /// assert_eq!(sa.interface_versions(), &[1, 2]);
    /// ```
    pub fn interface_version(mut self, version: InterfaceVersion) -> Self {
        assert!(
            (1..=999).contains(&version),
            "interface version {version} is not between 1 and 999"
        );
        if !self.versions.contains(&version) {
            self.versions.push(version);
            self.versions.sort_unstable();
        }
        self
    }

    /// The SA without the interface versions above `newest` (v1 always stays): what a unit of
    /// the previous release serves ([`crate::UnitConfig::newest_interface`]).
    #[must_use]
    pub fn interfaces_up_to(mut self, newest: InterfaceVersion) -> Self {
        self.versions.retain(|version| *version <= newest.max(1));
        self
    }

    /// The newest interface version this SA speaks: its canonical form.
    pub fn newest_interface_version(&self) -> InterfaceVersion {
        self.versions.last().copied().unwrap_or(1)
    }

    /// The interface versions this SA speaks, oldest first.
    pub fn interface_versions(&self) -> &[InterfaceVersion] {
        &self.versions
    }

    /// The SA as interface `version` shows it: its owned collections' aspects carry the
    /// facades' input shapes and schemas for that version (parsing and OpenAPI use them).
    pub fn as_version(&self, version: InterfaceVersion) -> Self {
        Self {
            owned: self
                .owned
                .iter()
                .map(|collection| collection.as_version(version))
                .collect(),
            ..self.clone()
        }
    }

    /// Declares a collection this SA owns (writes it, serves its feed).
    pub fn owns(mut self, mut collection: Collection) -> Self {
        self.assert_new_name(&collection);
        collection.role = Role::Owner;
        collection.owner = self.name.clone();
        self.owned.push(collection);
        self
    }

    /// Declares a read-only copy of `owner`'s collection: just the aspects declared on it,
    /// kept by polling the owner's feed, served under the owner's media types.
    pub fn copies(mut self, owner: &str, mut collection: Collection) -> Self {
        self.assert_new_name(&collection);
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

    /// Declares a reaction to every change of one of this SA's collections (owned or copied),
    /// run by its batch units as the job `job` (see [`crate::business`]): the design's batch
    /// service units, which serve no user traffic.
    pub fn reacts_to<F, Fut>(mut self, collection: &str, job: &str, run: F) -> Self
    where
        F: Fn(Context, Changed) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Refusal>> + Send + 'static,
    {
        assert!(
            self.collection(collection).is_some(),
            "reaction to undeclared collection {collection:?}"
        );
        assert!(
            is_identifier(job),
            "job name {job:?} is not a lower-case word"
        );
        assert!(
            self.reactions.iter().all(|reaction| reaction.job != job),
            "job {job:?} declared twice"
        );
        let run = Arc::new(run);
        self.reactions.push(Reaction {
            job: job.to_owned(),
            collection: collection.to_owned(),
            run: Arc::new(move |context, changed| {
                let run = Arc::clone(&run);
                Box::pin(async move { run(context, changed).await })
            }),
        });
        self
    }

    /// The reactions its batch units run.
    pub(crate) fn reactions(&self) -> &[Reaction] {
        &self.reactions
    }

    /// Whether the SA declares work for batch units.
    pub fn has_batch_work(&self) -> bool {
        !self.reactions.is_empty()
    }

    /// Collections are found by name in paths and in the store, so one SA serves each name
    /// once: two owners' `customers` cannot both be copied (copies are keyed by name alone).
    fn assert_new_name(&self, collection: &Collection) {
        assert!(
            self.collection(collection.name()).is_none(),
            "{} declares the collection {:?} twice (owned or copied)",
            self.name,
            collection.name()
        );
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
    business: CollectionRules,
    /// Older interface versions' views of aspects whose shape changed (see [`crate::facade`]).
    facades: Vec<Facade>,
    /// Upgrades of stored documents of an older canonical form, applied when read.
    upgrades: Vec<StoredUpgrade>,
}

/// What a collection declares beyond its aspects: lookups, who owns a resource, what sessions
/// may do, rules and commands (see [`crate::business`]).
#[derive(Debug, Clone, Default)]
struct CollectionRules {
    lookups: Vec<LookupField>,
    ownership: Ownership,
    sessions_write: bool,
    /// Anyone may create a resource without a token (signing up), within the unit's bounds.
    open_to_sign_up: bool,
    rules: Vec<Rule>,
    commands: Vec<Command>,
    /// Not refilled from peers' copies after a rollback (see [`Collection::not_refilled`]).
    not_refilled: bool,
    /// Written by the unit itself only (see [`Collection::read_only_to_callers`]).
    read_only_to_callers: bool,
}

/// A field a collection can be searched by (`GET /orders?customer=12`): a text field of one
/// aspect, indexed in every store that holds the collection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupField {
    pub aspect: AspectName,
    pub field: String,
}

/// Which customer a resource belongs to, for sessions: a session reaches exactly the resources
/// it owns, in every collection; a collection that declares no owner shows sessions nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Ownership {
    /// Sessions reach nothing here.
    #[default]
    Nobody,
    /// The resource is the customer (registration's customers).
    Itself,
    /// Every session reaches every resource (a public catalogue); sessions never write it.
    Everyone,
    /// A lookup field names the customer (an order's `customer`).
    Field(LookupField),
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
            business: CollectionRules::default(),
            facades: Vec::new(),
            upgrades: Vec::new(),
        }
    }

    /// Declares how interface `version` (older than the canonical one) shows `aspect` (or,
    /// for a qualified family such as `address`, each of its aspects): `to_old` renders a
    /// stored document in the old shape, `from_old` turns an old input into a canonical one,
    /// given the stored document it replaces so nothing newer is lost. `Old` is the old
    /// input's type (its shape and schema).
    ///
    /// ```
    /// use hiscale::Collection;
    /// use serde_json::{Map, Value};
    /// #[derive(serde::Deserialize, utoipa::ToSchema)]
    /// struct OldNote { text: String }
    /// fn to_v1(stored: &Map<String, Value>) -> Map<String, Value> {
    ///     let mut old = Map::new();
    ///     old.insert("text".into(), stored.get("body").cloned().unwrap_or_default());
    ///     old
    /// }
    /// fn from_v1(old: Map<String, Value>, current: Option<&Map<String, Value>>) -> Map<String, Value> {
    ///     let mut new = current.cloned().unwrap_or_default();
    ///     new.insert("body".into(), old.get("text").cloned().unwrap_or_default());
    ///     new
    /// }
    /// let notes = Collection::new("notes", "note")
    ///     .document("note", &[])
    ///     .facade::<OldNote>("note", 1, to_v1, from_v1);
    /// assert_eq!(notes.facades().len(), 1);
    /// ```
    pub fn facade<Old: DeserializeOwned + utoipa::ToSchema>(
        mut self,
        aspect: &str,
        version: InterfaceVersion,
        to_old: ToOld,
        from_old: FromOld,
    ) -> Self {
        let facade = Facade::new::<Old>(aspect, version, to_old, from_old);
        assert!(
            self.names
                .iter()
                .any(|name| facade.covers(&name.to_string())),
            "facade for undeclared aspect {aspect:?}"
        );
        assert!(
            !self
                .facades
                .iter()
                .any(|other| other.version == version && other.aspect == aspect),
            "facade for {aspect:?} in v{version} declared twice"
        );
        self.facades.push(facade);
        self
    }

    /// Declares how a stored document of `aspect` in an older canonical form becomes the
    /// current one; run on every read (it must leave current documents alone), so stored
    /// documents migrate lazily, never in one blocking step.
    pub fn upgrade(mut self, aspect: &str, upgrade: Upgrade) -> Self {
        self.upgrades.push(StoredUpgrade {
            aspect: aspect.to_owned(),
            upgrade,
        });
        self
    }

    /// The declared facades of older interface versions.
    pub fn facades(&self) -> &[Facade] {
        &self.facades
    }

    /// The declared upgrades of stored documents.
    pub fn upgrades(&self) -> &[StoredUpgrade] {
        &self.upgrades
    }

    /// The collection as interface `version` shows it: aspects with a facade for it take the
    /// facade's input shape, schema and (absent) example.
    pub fn as_version(&self, version: InterfaceVersion) -> Self {
        let mut view = self.clone();
        for definition in &mut view.aspects {
            let name = definition.name.to_string();
            if let Some(facade) = self
                .facades
                .iter()
                .find(|facade| facade.version == version && facade.covers(&name))
            {
                definition.shape = Arc::clone(&facade.shape);
                definition.facade_input = Some(facade.clone());
            }
        }
        view
    }

    /// Makes `field` of `aspect` searchable: `GET /{collection}?{field}=…` and
    /// [`crate::business::Context::find`]. The field holds text (an id, a status).
    ///
    /// ```
    /// use hiscale::{Collection, business::Draft};
    /// let orders = Collection::new("orders", "order")
    ///     .document("order", &[])
    ///     .lookup("order", "customer");
    /// assert!(orders.lookup_field("customer").is_some());
    /// ```
    pub fn lookup(mut self, aspect: &str, field: &str) -> Self {
        let parsed = AspectName::parse(aspect)
            .ok()
            .filter(|name| self.names.contains(name));
        assert!(parsed.is_some(), "lookup on undeclared aspect {aspect:?}");
        assert!(
            is_identifier(field),
            "lookup field {field:?} is not a lower-case word"
        );
        assert!(
            self.lookup_field(field).is_none(),
            "lookup field {field:?} declared twice"
        );
        if let Some(aspect) = parsed {
            self.business.lookups.push(LookupField {
                aspect,
                field: field.to_owned(),
            });
        }
        self
    }

    /// Every session reaches every resource, read-only: a catalogue all customers browse.
    pub fn readable_by_every_session(mut self) -> Self {
        self.business.ownership = Ownership::Everyone;
        self
    }

    /// Sessions reach a resource when it *is* their customer (registration's customers).
    pub fn owned_by_itself(mut self) -> Self {
        self.business.ownership = Ownership::Itself;
        self
    }

    /// Sessions reach a resource when `field` of `aspect` names their customer; declares the
    /// lookup too, so `GET /{collection}` with a session lists the customer's own resources.
    pub fn owned_by(mut self, aspect: &str, field: &str) -> Self {
        if self.lookup_field(field).is_none() {
            self = self.lookup(aspect, field);
        }
        if let Some(lookup) = self.lookup_field(field).cloned() {
            self.business.ownership = Ownership::Field(lookup);
        }
        self
    }

    /// Lets sessions create resources they own and replace aspects of them (within the
    /// session grant); the owner field is then taken from the session, never from the body.
    pub fn writable_by_sessions(mut self) -> Self {
        self.business.sessions_write = true;
        self
    }

    /// Lets anyone create a resource without a token: signing up. Bounded per unit (see
    /// `http::signup`): a few attempts a minute, password hashing on the capped blocking
    /// pool, and the answer shows only the new id, never what was stored.
    pub fn open_to_sign_up(mut self) -> Self {
        self.business.open_to_sign_up = true;
        self
    }

    /// Whether anyone may create a resource here without a token.
    pub fn is_open_to_sign_up(&self) -> bool {
        self.business.open_to_sign_up
    }

    /// Adds a rule run on every write, after each aspect's own validation, with a read view of
    /// the SA's store (see [`crate::business`]).
    pub fn rule<F, Fut>(mut self, rule: F) -> Self
    where
        F: Fn(Context, Draft) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Draft, Refusal>> + Send + 'static,
    {
        let rule = Arc::new(rule);
        self.business
            .rules
            .push(Rule(Arc::new(move |context, draft| {
                let rule = Arc::clone(&rule);
                Box::pin(async move { rule(context, draft).await })
            })));
        self
    }

    /// Declares a command, `POST /{collection}/{id}/{name}` with a body of type `I`: it gets
    /// the resource as it is and returns it with what it changed (one new version).
    /// `for_sessions` lets a session run it on resources it owns.
    pub fn command<I, F, Fut>(mut self, name: &str, for_sessions: bool, run: F) -> Self
    where
        I: DeserializeOwned + utoipa::ToSchema + Send + 'static,
        F: Fn(Context, Draft, I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Draft, Refusal>> + Send + 'static,
    {
        assert!(
            is_identifier(name),
            "command name {name:?} is not a lower-case word"
        );
        assert!(
            AspectName::parse(name).is_ok_and(|parsed| !self.names.contains(&parsed))
                && self.command_named(name).is_none(),
            "command {name:?} clashes with an aspect or another command"
        );
        self.business
            .commands
            .push(Command::new(name, for_sessions, run));
        self
    }

    /// The declared lookup on `field`.
    pub fn lookup_field(&self, field: &str) -> Option<&LookupField> {
        self.business
            .lookups
            .iter()
            .find(|lookup| lookup.field == field)
    }

    /// Every declared lookup.
    pub fn lookups(&self) -> &[LookupField] {
        &self.business.lookups
    }

    /// Who owns a resource, for sessions.
    pub fn ownership(&self) -> &Ownership {
        &self.business.ownership
    }

    /// Whether sessions may create and edit their own resources.
    pub fn sessions_write(&self) -> bool {
        self.business.sessions_write
    }

    pub(crate) fn rules(&self) -> &[Rule] {
        &self.business.rules
    }

    pub(crate) fn command_named(&self, name: &str) -> Option<&Command> {
        self.business
            .commands
            .iter()
            .find(|command| command.name == name)
    }

    /// The names of the declared commands.
    pub fn command_names(&self) -> impl Iterator<Item = &str> {
        self.business
            .commands
            .iter()
            .map(|command| command.name.as_str())
    }

    pub(crate) fn commands(&self) -> &[Command] {
        &self.business.commands
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
            facade_input: None,
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

    /// Declares that a restore does not refill this owned collection from peers' copies: the
    /// design refills master data only, and data a peer merely derives (or that another
    /// system keeps) must not come back from a copy. Reported as not refillable; its counter
    /// still moves past every version a consumer reported.
    pub fn not_refilled(mut self) -> Self {
        self.business.not_refilled = true;
        self
    }

    /// Whether a restore refills this collection from the copies peers keep (the default for
    /// every owned collection some peer copies).
    pub fn refilled_by_restore(&self) -> bool {
        !self.business.not_refilled
    }

    /// Declares that no caller writes this owned collection, the operator included: the
    /// unit's own code does (login's revocations: a logout, changed credentials, and the
    /// deletion after `exp`). A caller's write would break what the collection promises (a
    /// revocation deleted before its `exp` revives a signed-out session everywhere), so every
    /// write answers `405 read-only-copy`, as at a copy, and the OpenAPI document lists reads
    /// only.
    pub fn read_only_to_callers(mut self) -> Self {
        self.business.read_only_to_callers = true;
        self
    }

    /// Whether callers may write this collection here: its owner, unless it is
    /// [`Collection::read_only_to_callers`].
    pub fn writable_by_callers(&self) -> bool {
        self.role == Role::Owner && !self.business.read_only_to_callers
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
    /// In an older version's view ([`Collection::as_version`]): the facade whose input this
    /// version takes instead (its schema documents it).
    facade_input: Option<Facade>,
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
        match &self.facade_input {
            Some(facade) => facade.input_schema(),
            None => (self.input_schema)(),
        }
    }

    /// The stored schema of this version: the old input's for an older version's facade
    /// (what it reads back is what it writes).
    pub fn shown_schema(&self) -> RefOr<Schema> {
        match &self.facade_input {
            Some(facade) => facade.input_schema(),
            None => (self.stored_schema)(),
        }
    }

    pub fn stored_schema(&self) -> RefOr<Schema> {
        (self.stored_schema)()
    }

    /// The component schemas the input and stored schemas refer to (`$ref`), by name.
    pub fn component_schemas(&self) -> Vec<(String, RefOr<Schema>)> {
        let mut schemas = Vec::new();
        (self.schemas)(&mut schemas);
        if let Some(facade) = &self.facade_input {
            schemas.extend(facade.component_schemas());
        }
        schemas
    }

    /// An input the aspect accepts, for the OpenAPI document: [`Aspect::example`], else the
    /// input schema's own example (an older version's facade has only the latter).
    pub fn example(&self) -> Option<Value> {
        if self.facade_input.is_some() {
            return crate::shape::schema_example(&self.input_schema());
        }
        (self.example)().or_else(|| crate::shape::schema_example(&self.input_schema()))
    }

    /// The shape of the input's fields (`Any` for a copy's documents).
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
}

fn accept_erased<A: Aspect>(fields: Map<String, Value>) -> Result<Accepted, Invalid> {
    // The path names the field serde refused (`lines[0].price.amount: …`); a type's input
    // rule (a money amount's scale) answers its own code.
    let (input, refused) = crate::types::reading_input(|| {
        serde_path_to_error::deserialize::<_, A::Input>(Value::Object(fields))
    });
    let input = input.map_err(|error| {
        Invalid::new(refused.unwrap_or(codes::INVALID_ASPECT), error.to_string())
    })?;
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
