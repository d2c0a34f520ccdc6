//! The kind registry: every kind of managed resource, each a folder of its own, listed once.
//!
//! A kind (`pppd`, `pppoe`, `uisp`, `airos`) implements [`KindDef`] (the contract, in [`def`],
//! below every kind) once: its folder in desired-state and the first word of its addresses, its
//! inventory section and file model with their validation, its JSON Schemas, its provider
//! (observe, pure diff, apply), its import and its lab twin. The loader ([`crate::desired`]),
//! `validate`, `schema`, `import`, the lab runtime, the demo and the engine ([`engine`]) iterate
//! [`ALL`] and never name a kind.
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
//! lives below the kinds and never inside one. A kind imports the contract ([`def`]), the
//! engine's provider contract ([`crate::engine`]), the YAML checks ([`crate::yaml`]) and that
//! vocabulary; never this file, the loader, the lab runtime, or another kind.

pub mod def;

use std::any::Any;
use std::collections::BTreeMap;

use serde::de::MapAccess;

pub use def::{AnyKind, DesiredState, Imported, InventoryNames, KindDef, KindFailure, KindSet};

use crate::engine::{Context, Engine, TargetFilter};

/// An engine over every registered kind that has desired state, with the inventory's
/// disconnect cap (`guards.max_disconnects`; [`Engine::with_max_disconnects`] overrides it).
pub fn engine(
    desired: &DesiredState,
    ctx: &Context,
    filter: TargetFilter,
    max_deletes: usize,
) -> Engine {
    let providers = ALL
        .iter()
        .filter_map(|k| k.provider(desired, ctx))
        .collect();
    Engine::new(
        providers,
        filter,
        max_deletes,
        desired.digest.clone(),
        ctx.key.id(),
    )
    .with_max_disconnects(desired.guards.max_disconnects)
    .with_events(ctx.events.clone())
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn kinds_have_distinct_names_and_sections_and_every_section_used_is_owned() {
        let names: BTreeSet<&str> = ALL.iter().map(|k| k.name()).collect();
        let sections: BTreeSet<&str> = ALL.iter().map(|k| k.section()).collect();
        assert_eq!(names.len(), ALL.len(), "two kinds share a name");
        assert_eq!(
            sections.len(),
            ALL.len(),
            "two kinds share an inventory section"
        );
        for k in ALL {
            for used in k.uses_sections() {
                assert!(
                    sections.contains(used),
                    "kind {} reads inventory section {used}, which no registered kind owns",
                    k.name()
                );
            }
            assert!(
                !["guards", "allow_inline_secrets"].contains(&k.section()),
                "kind {} takes a key the inventory keeps for itself",
                k.name()
            );
        }
    }
}
