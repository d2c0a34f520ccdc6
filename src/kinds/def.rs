//! The kind contract: what a kind implements ([`KindDef`]), its type-erased form the loader,
//! the engine and the lab iterate ([`AnyKind`], implemented for every `KindDef`), and what a
//! load produces ([`DesiredState`]: each kind's validated targets and files, by kind). Below
//! every kind and above none: it names no kind (the list is the registry's, in
//! [`crate::kinds`]).

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::engine::{BoxFuture, Context, DynProvider};
use crate::ownership::Guards;
use crate::secret::SecretResolver;
use crate::yaml::{Diagnostic, FileCheck};

/// Why a kind's import or `accept-host-key` failed: the kind's own typed error, boxed (the
/// command adds its context).
pub type KindFailure = Box<dyn std::error::Error + Send + Sync>;

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
    /// Inventory sections of other kinds this kind reads (the airOS kind asks UISP servers
    /// for the connection string). Declared so that a registry without the kind that owns one
    /// fails a test instead of a run.
    const USES_SECTIONS: &'static [&'static str] = &[];
    /// How often `wispctl reconcile` reads one target of this kind by default (the
    /// inventory's `reconcile.kinds.<kind>.interval` overrides it): a router or a host is
    /// cheap to read, a fleet of old antennas is not.
    const RECONCILE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

    /// One entry of the inventory section, as written.
    type TargetSpec: DeserializeOwned + JsonSchema + Send + Sync + 'static;
    /// One target after validation (credentials resolved, defaults applied).
    type Target: Clone + Send + Sync + 'static;
    /// One resource file, as written.
    type File: DeserializeOwned + JsonSchema + Send;
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

    /// Begins reading target `name` before the resource files are loaded, for a command that
    /// changes nothing (`plan`, `drift`): the read goes to [`Context::early`] under the
    /// target's address, and the provider's `observe` takes it from there
    /// ([`crate::engine::early`]). Only what `observe` reads without the desired state may be
    /// read here. Returns whether a read began; the default reads nothing early.
    fn read_early(_name: &str, _target: &Self::Target, _ctx: &Context) -> bool {
        false
    }

    /// `import KIND TARGET`: reads the target once and renders YAML that plans to no changes.
    /// `None` when the kind has no import.
    fn import(
        _desired: &DesiredState,
        _target: &str,
        _ctx: &Context,
    ) -> Option<BoxFuture<Result<Imported, KindFailure>>> {
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
    ) -> Option<Result<String, KindFailure>> {
        None
    }

    /// The kind's lab twin.
    #[cfg(feature = "lab")]
    fn twin() -> Option<&'static dyn crate::lab::twin::Twin> {
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
    /// [`KindDef::USES_SECTIONS`].
    fn uses_sections(&self) -> &'static [&'static str];
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
    /// Begins early reads ([`KindDef::read_early`]) of the targets of `section` (what
    /// `validate_section` made) that `wanted` accepts by name, at most
    /// [`crate::engine::early::MAX_PER_KIND`]; returns how many began.
    fn read_early(
        &self,
        section: &(dyn Any + Send + Sync),
        wanted: &dyn Fn(&str) -> bool,
        ctx: &Context,
    ) -> usize;
    /// Parses, checks the target of, and validates this kind's resource files: the parses
    /// (most of the time a large folder takes) run on every core; checks and validation then
    /// run in file order, so diagnostics and results are those of one file after the other.
    fn load_files(&self, files: &mut dyn Any, batch: &mut [ResourceFile<'_>]);
    /// The validated set: targets from [`Self::validate_section`], desired from the files.
    /// The validated set, and the file each target's desired state came from (by target).
    fn finish(
        &self,
        targets: Box<dyn Any + Send + Sync>,
        files: Box<dyn Any>,
    ) -> (Arc<dyn Any + Send + Sync>, BTreeMap<String, PathBuf>);
    /// [`KindDef::RECONCILE_INTERVAL`].
    fn reconcile_interval(&self) -> std::time::Duration;
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
    ) -> Option<BoxFuture<Result<Imported, KindFailure>>>;
    /// See [`KindDef::accept_host_key`].
    fn accept_host_key(
        &self,
        desired: &DesiredState,
        target: &str,
        host: &str,
        fingerprint: &str,
        ctx: &Context,
    ) -> Option<Result<String, KindFailure>>;
    /// See [`KindDef::twin`].
    #[cfg(feature = "lab")]
    fn twin(&self) -> Option<&'static dyn crate::lab::twin::Twin>;
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

    fn uses_sections(&self) -> &'static [&'static str] {
        K::USES_SECTIONS
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
        Box::new(KindFiles::<K>::default())
    }

    fn read_early(
        &self,
        section: &(dyn Any + Send + Sync),
        wanted: &dyn Fn(&str) -> bool,
        ctx: &Context,
    ) -> usize {
        let Some(targets) = section.downcast_ref::<BTreeMap<String, K::Target>>() else {
            return 0;
        };
        let mut begun = 0;
        for (name, target) in targets {
            if begun == crate::engine::early::MAX_PER_KIND {
                break;
            }
            if wanted(name) && K::read_early(name, target, ctx) {
                begun += 1;
            }
        }
        begun
    }

    fn load_files(&self, files: &mut dyn Any, batch: &mut [ResourceFile<'_>]) {
        let files = files
            .downcast_mut::<KindFiles<K>>()
            .expect("begin_files made it");
        let inputs: Vec<(&Path, &str)> = batch.iter().map(|f| (f.path, f.text)).collect();
        let parsed = parse_all::<K::File>(&inputs);
        for (file, (result, diags)) in batch.iter_mut().zip(parsed) {
            file.diags.extend(diags);
            if let Some(parsed) = result {
                files.accept(parsed, file);
            }
        }
    }

    fn finish(
        &self,
        targets: Box<dyn Any + Send + Sync>,
        files: Box<dyn Any>,
    ) -> (Arc<dyn Any + Send + Sync>, BTreeMap<String, PathBuf>) {
        let targets = *targets
            .downcast::<BTreeMap<String, K::Target>>()
            .expect("validate_section made it");
        let files = files
            .downcast::<KindFiles<K>>()
            .expect("begin_files made it");
        let sources = files
            .sources
            .into_iter()
            .map(|(name, (path, _))| (name, path))
            .collect();
        let set: Arc<dyn Any + Send + Sync> = Arc::new(KindSet::<K> {
            targets,
            desired: files.desired,
        });
        (set, sources)
    }

    fn reconcile_interval(&self) -> std::time::Duration {
        K::RECONCILE_INTERVAL
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
    ) -> Option<BoxFuture<Result<Imported, KindFailure>>> {
        K::import(desired, target, ctx)
    }

    fn accept_host_key(
        &self,
        desired: &DesiredState,
        target: &str,
        host: &str,
        fingerprint: &str,
        ctx: &Context,
    ) -> Option<Result<String, KindFailure>> {
        K::accept_host_key(desired, target, host, fingerprint, ctx)
    }

    #[cfg(feature = "lab")]
    fn twin(&self) -> Option<&'static dyn crate::lab::twin::Twin> {
        K::twin()
    }
}

/// Everything loaded from a desired-state folder, validated.
#[derive(Clone)]
pub struct DesiredState {
    /// The folder.
    pub root: PathBuf,
    /// Run-wide guards.
    pub guards: Guards,
    /// SHA-256 over every file's relative path and bytes: a saved plan names the exact input.
    pub digest: String,
    /// Warnings (inline secrets and the like); errors fail the load instead.
    pub warnings: Vec<Diagnostic>,
    /// Each kind's [`KindSet`], by kind name.
    pub(crate) kinds: BTreeMap<&'static str, Arc<dyn Any + Send + Sync>>,
    /// Per target address (`pppoe.balanceador`), a digest of what its desired state comes
    /// from (the inventory and the target's file): the controller reconciles at once the
    /// targets whose digest a change of the folder moved.
    pub target_digests: BTreeMap<String, String>,
    /// The inventory's `reconcile:` section (the controller's settings).
    pub reconcile: Arc<crate::controller::config::Reconcile>,
}

impl std::fmt::Debug for DesiredState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesiredState")
            .field("root", &self.root)
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl DesiredState {
    /// One kind's validated targets and desired state.
    pub fn kind<K: KindDef>(&self) -> &KindSet<K> {
        self.kinds
            .get(K::NAME)
            .and_then(|k| k.downcast_ref::<KindSet<K>>())
            .expect("every registered kind is loaded")
    }

    /// The validated entries of an inventory section, for a kind that uses another kind's
    /// targets (the airOS kind asks UISP servers for the connection string). `T` is the type
    /// the section's kind validates its entries into; `None` when no kind has that section
    /// with that type.
    pub fn section<T: 'static>(&self, section: &str) -> Option<&BTreeMap<String, T>> {
        let kind = crate::kinds::ALL.iter().find(|k| k.section() == section)?;
        let set = self.kinds.get(kind.name())?;
        kind.targets(set.as_ref()).downcast_ref()
    }
}

/// The names of the entries of every inventory section, for checks that span kinds (an
/// antenna group's `connection.uisp` must name a UISP server). `None` for a section when the
/// inventory did not load.
#[derive(Debug, Clone, Default)]
pub struct InventoryNames(BTreeMap<&'static str, Vec<String>>);

impl InventoryNames {
    pub(crate) fn insert(&mut self, section: &'static str, names: Vec<String>) {
        self.0.insert(section, names);
    }

    /// The entries of `section`; `None` when the inventory did not load (nothing can be
    /// checked against it then).
    pub fn get(&self, section: &str) -> Option<&[String]> {
        self.0.get(section).map(Vec::as_slice)
    }
}

/// One resource file being loaded.
pub struct ResourceFile<'a> {
    pub(crate) path: &'a Path,
    pub(crate) text: &'a str,
    pub(crate) diags: &'a mut Vec<Diagnostic>,
    pub(crate) dir: &'a Path,
    pub(crate) resolver: &'a SecretResolver,
    /// The inventory's entry names; `None` when the inventory did not load.
    pub(crate) names: Option<&'a InventoryNames>,
}

/// Below this many bytes in all, files are parsed one after the other: threads cost more than
/// they save.
const PARALLEL_PARSE_BYTES: usize = 256 * 1024;

/// Parses files on up to every core, each file wholly on one thread; results in input order,
/// each with the diagnostics of its parse.
#[allow(clippy::type_complexity)]
fn parse_all<'t, T: DeserializeOwned + Send>(
    inputs: &[(&Path, &'t str)],
) -> Vec<(
    Option<(T, crate::yaml::locate::LocationIndex<'t>)>,
    Vec<Diagnostic>,
)> {
    let one = |(path, text): &(&Path, &'t str)| {
        let mut diags = Vec::new();
        let parsed = crate::yaml::parse::parse::<T>(path, text, &mut diags);
        (parsed, diags)
    };
    let bytes: usize = inputs.iter().map(|(_, t)| t.len()).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if inputs.len() < 2 || cores < 2 || bytes < PARALLEL_PARSE_BYTES {
        return inputs.iter().map(one).collect();
    }
    // Contiguous chunks of about equal bytes, one per thread.
    let per = bytes.div_ceil(cores);
    let mut chunks: Vec<&[(&Path, &'t str)]> = Vec::new();
    let (mut start, mut size) = (0, 0);
    for (i, (_, t)) in inputs.iter().enumerate() {
        size += t.len();
        if size >= per || i + 1 == inputs.len() {
            chunks.push(&inputs[start..=i]);
            (start, size) = (i + 1, 0);
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| s.spawn(move || chunk.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a YAML parse panicked"))
            .collect()
    })
}

/// The files of one kind in one load: every file names one target of the inventory, and a
/// target has one file.
pub struct KindFiles<K: KindDef> {
    pub(crate) desired: BTreeMap<String, K::Desired>,
    sources: BTreeMap<String, (PathBuf, usize)>,
    checks: K::Checks,
}

impl<K: KindDef> Default for KindFiles<K> {
    fn default() -> Self {
        KindFiles {
            desired: BTreeMap::new(),
            sources: BTreeMap::new(),
            checks: K::Checks::default(),
        }
    }
}

impl<K: KindDef> KindFiles<K> {
    /// Checks the target of one parsed file and validates it.
    fn accept(
        &mut self,
        (parsed, index): (K::File, crate::yaml::locate::LocationIndex<'_>),
        file: &mut ResourceFile<'_>,
    ) {
        let name = K::file_target(&parsed).to_string();
        let field = K::TARGET_FIELD;
        let mut check = FileCheck::new(file.path, &index, file.dir, file.resolver, file.diags);
        let empty = InventoryNames::default();
        let names = file.names.unwrap_or(&empty);
        if let Some(defined) = names.get(K::SECTION)
            && !defined.contains(&name)
        {
            check.error(
                field,
                format!(
                    "{} {name:?} is not defined in inventory.yaml (defined: {})",
                    K::TARGET_LABEL,
                    if defined.is_empty() {
                        "none".into()
                    } else {
                        defined.join(", ")
                    }
                ),
            );
        }
        if let Some((other, line)) = self.sources.get(&name) {
            check.error(
                field,
                format!(
                    "{} {name:?} already has a {} file: {}:{line}",
                    K::TARGET_LABEL,
                    K::NAME,
                    other.display()
                ),
            );
        } else {
            self.sources.insert(
                name.clone(),
                (file.path.to_path_buf(), check.place(field).0),
            );
        }
        if let Some(d) = K::validate_file(parsed, &mut check, &mut self.checks, names) {
            self.desired.insert(name, d);
        }
    }
}

#[cfg(test)]
mod parse_all_tests {
    use std::path::PathBuf;

    use super::parse_all;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct File {
        router: String,
        secrets: Vec<String>,
    }

    /// Large enough to be parsed on several threads: the results, and each file's
    /// diagnostics, are those of one parse after the other, in input order.
    #[test]
    fn files_parsed_on_several_threads_come_back_in_order_with_their_own_diagnostics() {
        let paths: Vec<PathBuf> = (0..7)
            .map(|i| PathBuf::from(format!("r{i}.yaml")))
            .collect();
        let texts: Vec<String> = (0..7)
            .map(|i| {
                let mut t = format!("router: r{i}\nsecrets:\n");
                for j in 0..6_000 {
                    t.push_str(&format!("  - customer-{i}-{j}\n"));
                }
                if i == 3 {
                    t.push_str("unknown: 1\n");
                }
                t
            })
            .collect();
        let inputs: Vec<(&std::path::Path, &str)> = paths
            .iter()
            .map(PathBuf::as_path)
            .zip(texts.iter().map(String::as_str))
            .collect();
        assert!(texts.iter().map(String::len).sum::<usize>() > super::PARALLEL_PARSE_BYTES);
        let parsed = parse_all::<File>(&inputs);
        assert_eq!(parsed.len(), 7);
        for (i, (result, diags)) in parsed.iter().enumerate() {
            let mut alone = Vec::new();
            let expected = crate::yaml::parse::parse::<File>(inputs[i].0, inputs[i].1, &mut alone);
            assert_eq!(
                result.as_ref().map(|(f, _)| f),
                expected.as_ref().map(|(f, _)| f),
                "file {i}"
            );
            assert_eq!(diags.len(), alone.len(), "file {i}");
            if i != 3 {
                assert_eq!(result.as_ref().unwrap().0.router, format!("r{i}"));
            }
        }
    }
}
