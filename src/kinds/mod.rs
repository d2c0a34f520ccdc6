//! The kind registry: every kind of managed resource, each a folder of its own, listed once.
//!
//! A kind (`pppd`, `pppoe`, `uisp`, `airos`) implements [`KindDef`] once: its folder in
//! desired-state and the first word of its addresses, its inventory section and file model with
//! their validation, its JSON Schemas, its provider (observe, pure diff, apply), its import and
//! its lab twin. The loader ([`crate::desired`]), `validate`, `schema`, `import`, the lab
//! runtime, the demo and the engine iterate [`ALL`] and never name a kind.
//!
//! Adding a kind: a folder `src/kinds/<name>/` whose `mod.rs` defines `pub struct Kind` with
//! `impl KindDef for Kind`, and its name in the `registry!` line below. Nothing else changes
//! (`tests/kind_isolation.rs` checks that no other file names a kind).
//!
//! Inside a kind's folder, by role: `spec.rs` (YAML model, inventory section, validation),
//! `client.rs` (how to talk to its target, unless a shared transport below the kinds does),
//! `observe.rs` (one bulk read per target), `diff.rs` (pure, small functions over plain
//! values), `apply.rs` (writes, verifies, one outcome per change), `import.rs` (live state to
//! YAML) and `twin.rs` (its lab simulator, behind the `lab` feature). Shared vocabulary (MAC
//! addresses, the ownership tag, secret references, names, the SSH transport, the UISP API)
//! lives below the kinds and never inside one.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::{DeserializeOwned, MapAccess};

use crate::desired::check::FileCheck;
use crate::desired::{DesiredState, InventoryNames};
use crate::engine::{BoxFuture, Context, DynProvider};

/// Everything one kind of managed resource is. Implemented once per kind, by a unit struct
/// `Kind` in the kind's folder, and registered in `registry!`.
///
/// # Warning
/// `SECTION` and `NAME` are part of the operator's files (inventory keys, folder names,
/// addresses in saved plans): changing one breaks every repository that uses it.
pub trait KindDef: Send + Sync + Sized + 'static {
    /// The first word of every address (`pppoe.balanceador.secret["x"]`) and the folder of
    /// the kind's files in desired-state (`pppoe/balanceador.yaml`).
    const NAME: &'static str;
    /// The inventory key that lists this kind's targets by name (`routers`).
    const SECTION: &'static str;
    /// What the inventory section holds, for its JSON Schema.
    const SECTION_DOC: &'static str;
    /// What one target is called in messages (`router`).
    const TARGET_LABEL: &'static str;
    /// The key of a resource file that names its target (`router: balanceador`).
    const TARGET_FIELD: &'static str;

    /// One entry of the inventory section, as written.
    type TargetSpec: DeserializeOwned + JsonSchema + Send + Sync + 'static;
    /// One target after validation (credentials resolved, defaults applied).
    type Target: Clone + Send + Sync + 'static;
    /// One resource file, as written.
    type File: DeserializeOwned + JsonSchema;
    /// One target's desired state after validation.
    type Desired: Clone + Send + Sync + 'static;
    /// What the checks of one file carry to the next file of the kind in one load (rules that
    /// span files, such as an address unique across routers).
    type Checks: Default;

    /// Validates one inventory entry. `at` is its path in the inventory (`routers.balanceador`)
    /// for [`FileCheck`]; `inline_ok` is the inventory's `allow_inline_secrets`.
    fn validate_target(
        name: &str,
        spec: &Self::TargetSpec,
        at: &str,
        inline_ok: bool,
        check: &mut FileCheck<'_>,
    ) -> Option<Self::Target>;

    /// The target a resource file names.
    fn file_target(file: &Self::File) -> &str;

    /// Validates one resource file whose target exists (or whose inventory did not load).
    fn validate_file(
        file: Self::File,
        check: &mut FileCheck<'_>,
        checks: &mut Self::Checks,
        inventory: &InventoryNames,
    ) -> Option<Self::Desired>;

    /// What `validate` says this kind holds (`1 router(s)`).
    fn summary(set: &KindSet<Self>) -> String;

    /// The provider the engine runs for this kind's targets with desired state.
    fn provider(set: &KindSet<Self>, desired: &DesiredState, ctx: &Context)
    -> Arc<dyn DynProvider>;

    /// `import KIND TARGET`: reads the target once and renders YAML that plans to no changes.
    /// `None` when the kind has no import.
    fn import(
        _desired: &DesiredState,
        _target: &str,
        _ctx: &Context,
    ) -> Option<BoxFuture<Result<Imported, anyhow::Error>>> {
        None
    }

    /// `accept-host-key TARGET HOST FINGERPRINT`: pins a verified SSH host key of one of the
    /// target's devices. `None` when the kind has no SSH devices or no such target.
    fn accept_host_key(
        _desired: &DesiredState,
        _target: &str,
        _host: &str,
        _fingerprint: &str,
        _ctx: &Context,
    ) -> Option<Result<String, anyhow::Error>> {
        None
    }

    /// The kind's lab twin.
    #[cfg(feature = "lab")]
    fn twin() -> Option<&'static dyn crate::lab::Twin> {
        None
    }
}

/// One kind's validated inventory entries and desired state, by target name.
pub struct KindSet<K: KindDef> {
    /// Every target of the inventory section, validated.
    pub targets: BTreeMap<String, K::Target>,
    /// Every target that has a resource file, validated.
    pub desired: BTreeMap<String, K::Desired>,
}

impl<K: KindDef> Clone for KindSet<K> {
    fn clone(&self) -> Self {
        KindSet {
            targets: self.targets.clone(),
            desired: self.desired.clone(),
        }
    }
}

impl<K: KindDef> Default for KindSet<K> {
    fn default() -> Self {
        KindSet {
            targets: BTreeMap::new(),
            desired: BTreeMap::new(),
        }
    }
}

/// What an import produced.
pub struct Imported {
    /// The YAML file, commented, that plans to no changes.
    pub yaml: String,
    /// `NAME=value` lines for the secrets the YAML references (written apart, mode 0600), or
    /// empty.
    pub env: String,
    /// Things the operator should check.
    pub warnings: Vec<String>,
    /// What was read, for the command's output (`3 secret(s)`).
    pub summary: String,
}

/// A kind with its types erased, so that the loader, the engine and the lab iterate one list.
/// Implemented for every [`KindDef`].
pub trait AnyKind: Send + Sync {
    /// [`KindDef::NAME`].
    fn name(&self) -> &'static str;
    /// [`KindDef::SECTION`].
    fn section(&self) -> &'static str;
    /// [`KindDef::TARGET_LABEL`].
    fn target_label(&self) -> &'static str;
    /// The JSON Schema of one entry of the inventory section (a map of these by name).
    fn section_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema;
    /// The resource file's schema, named `<NAME>.schema.json`.
    fn file_schema(&self) -> schemars::Schema;
    /// Validates the parsed inventory section (`Option<BTreeMap<String, TargetSpec>>`).
    fn validate_section(
        &self,
        section: Box<dyn Any>,
        inline_ok: bool,
        check: &mut FileCheck<'_>,
    ) -> Box<dyn Any + Send + Sync>;
    /// A fresh accumulator for this kind's resource files in one load.
    fn begin_files(&self) -> Box<dyn Any>;
    /// Parses, checks the target of, and validates one resource file.
    fn load_file(&self, files: &mut dyn Any, file: &mut crate::desired::ResourceFile<'_>);
    /// The validated set: targets from [`Self::validate_section`], desired from the files.
    fn finish(
        &self,
        targets: Box<dyn Any + Send + Sync>,
        files: Box<dyn Any>,
    ) -> Arc<dyn Any + Send + Sync>;
    /// The `targets` map (`BTreeMap<String, Target>`) of this kind's erased [`KindSet`].
    fn targets<'a>(&self, set: &'a (dyn Any + Send + Sync)) -> &'a dyn Any;
    /// Whether the inventory defines target `name` of this kind.
    fn has_target(&self, desired: &DesiredState, name: &str) -> bool;
    /// See [`KindDef::summary`].
    fn summary(&self, desired: &DesiredState) -> String;
    /// The provider for this kind, when any of its targets has desired state.
    fn provider(&self, desired: &DesiredState, ctx: &Context) -> Option<Arc<dyn DynProvider>>;
    /// See [`KindDef::import`].
    fn import(
        &self,
        desired: &DesiredState,
        target: &str,
        ctx: &Context,
    ) -> Option<BoxFuture<Result<Imported, anyhow::Error>>>;
    /// See [`KindDef::accept_host_key`].
    fn accept_host_key(
        &self,
        desired: &DesiredState,
        target: &str,
        host: &str,
        fingerprint: &str,
        ctx: &Context,
    ) -> Option<Result<String, anyhow::Error>>;
    /// See [`KindDef::twin`].
    #[cfg(feature = "lab")]
    fn twin(&self) -> Option<&'static dyn crate::lab::Twin>;
}

impl<K: KindDef> AnyKind for K {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn section(&self) -> &'static str {
        K::SECTION
    }

    fn target_label(&self) -> &'static str {
        K::TARGET_LABEL
    }

    fn section_schema(&self, generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut s = generator.subschema_for::<BTreeMap<String, K::TargetSpec>>();
        s.insert("description".into(), K::SECTION_DOC.into());
        s.insert("default".into(), serde_json::json!({}));
        s
    }

    fn file_schema(&self) -> schemars::Schema {
        schemars::schema_for!(K::File)
    }

    fn validate_section(
        &self,
        section: Box<dyn Any>,
        inline_ok: bool,
        check: &mut FileCheck<'_>,
    ) -> Box<dyn Any + Send + Sync> {
        let specs = section
            .downcast::<Option<BTreeMap<String, K::TargetSpec>>>()
            .expect("the registry parses each section with its kind's type")
            .unwrap_or_default();
        let mut targets: BTreeMap<String, K::Target> = BTreeMap::new();
        for (name, spec) in &specs {
            let at = format!("{}.{name}", K::SECTION);
            if let Some(t) = K::validate_target(name, spec, &at, inline_ok, check) {
                targets.insert(name.clone(), t);
            }
        }
        Box::new(targets)
    }

    fn begin_files(&self) -> Box<dyn Any> {
        Box::new(crate::desired::KindFiles::<K>::default())
    }

    fn load_file(&self, files: &mut dyn Any, file: &mut crate::desired::ResourceFile<'_>) {
        files
            .downcast_mut::<crate::desired::KindFiles<K>>()
            .expect("begin_files made it")
            .load(file);
    }

    fn finish(
        &self,
        targets: Box<dyn Any + Send + Sync>,
        files: Box<dyn Any>,
    ) -> Arc<dyn Any + Send + Sync> {
        let targets = *targets
            .downcast::<BTreeMap<String, K::Target>>()
            .expect("validate_section made it");
        let files = files
            .downcast::<crate::desired::KindFiles<K>>()
            .expect("begin_files made it");
        Arc::new(KindSet::<K> {
            targets,
            desired: files.desired,
        })
    }

    fn targets<'a>(&self, set: &'a (dyn Any + Send + Sync)) -> &'a dyn Any {
        &set.downcast_ref::<KindSet<K>>()
            .expect("finish made it")
            .targets
    }

    fn has_target(&self, desired: &DesiredState, name: &str) -> bool {
        desired.kind::<K>().targets.contains_key(name)
    }

    fn summary(&self, desired: &DesiredState) -> String {
        K::summary(desired.kind::<K>())
    }

    fn provider(&self, desired: &DesiredState, ctx: &Context) -> Option<Arc<dyn DynProvider>> {
        let set = desired.kind::<K>();
        (!set.desired.is_empty()).then(|| K::provider(set, desired, ctx))
    }

    fn import(
        &self,
        desired: &DesiredState,
        target: &str,
        ctx: &Context,
    ) -> Option<BoxFuture<Result<Imported, anyhow::Error>>> {
        K::import(desired, target, ctx)
    }

    fn accept_host_key(
        &self,
        desired: &DesiredState,
        target: &str,
        host: &str,
        fingerprint: &str,
        ctx: &Context,
    ) -> Option<Result<String, anyhow::Error>> {
        K::accept_host_key(desired, target, host, fingerprint, ctx)
    }

    #[cfg(feature = "lab")]
    fn twin(&self) -> Option<&'static dyn crate::lab::Twin> {
        K::twin()
    }
}

/// Finds a registered kind by name.
pub fn by_name(name: &str) -> Option<&'static dyn AnyKind> {
    ALL.iter().copied().find(|k| k.name() == name)
}

/// Declares the kinds: their modules, [`ALL`], and the typed inventory sections (one parse of
/// `inventory.yaml`, each section deserialised with its kind's own types).
macro_rules! registry {
    ($($kind:ident),* $(,)?) => {
        $(pub mod $kind;)*

        /// Every kind, in the order plans and reports list them.
        pub static ALL: &[&dyn AnyKind] = &[$(&$kind::Kind),*];

        /// The inventory sections as parsed, one typed map per kind.
        #[derive(Default)]
        pub(crate) struct Sections {
            $($kind: Option<BTreeMap<String, <$kind::Kind as KindDef>::TargetSpec>>,)*
        }

        impl Sections {
            /// Every section's key.
            pub(crate) const KEYS: &'static [&'static str] =
                &[$(<$kind::Kind as KindDef>::SECTION),*];

            /// Reads the value of `key` when it is a kind's section; `false` when it is not.
            pub(crate) fn take<'de, A: MapAccess<'de>>(
                &mut self,
                key: &str,
                map: &mut A,
            ) -> Result<bool, A::Error> {
                $(
                    if key == <$kind::Kind as KindDef>::SECTION {
                        if self.$kind.is_some() {
                            return Err(serde::de::Error::duplicate_field(
                                <$kind::Kind as KindDef>::SECTION,
                            ));
                        }
                        self.$kind = Some(map.next_value()?);
                        return Ok(true);
                    }
                )*
                Ok(false)
            }

            /// Each kind with its parsed section, in registry order.
            pub(crate) fn into_parts(self) -> Vec<(&'static dyn AnyKind, Box<dyn Any>)> {
                vec![$((&$kind::Kind as &'static dyn AnyKind, Box::new(self.$kind) as Box<dyn Any>)),*]
            }

            /// The names of the entries of every section.
            pub(crate) fn names(&self) -> InventoryNames {
                let mut names = InventoryNames::default();
                $(
                    names.insert(
                        <$kind::Kind as KindDef>::SECTION,
                        self.$kind.iter().flat_map(|m| m.keys().cloned()).collect(),
                    );
                )*
                names
            }
        }
    };
}

registry!(pppd, pppoe, uisp, airos);
